"""SOCKS5 proxy: every tunnelled transport against mosquitto through pproxy (an independent
SOCKS5 server), and the replies pproxy never sends through a scripted SOCKS5 peer."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
import trio
from test_transport_proxy import _inner_transports
from test_transports import LOCALHOST, MAX_PACKET, TIMEOUT, connack_over, qos_round_trip

from trio_mqtt import (
    InvalidOptionError,
    MqttOptions,
    ProxyError,
    QoS,
    Socks5Proxy,
    TcpTransport,
    TransportError,
    open_mqtt_connection,
)
from trio_mqtt.__main__ import main
from trio_mqtt.testing import MosquittoBroker

USER, PASSWORD = "proxy-user", "pässword"


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker(
        tls=True, websockets=True, websockets_tls=True, log_types=("error", "warning")
    ) as running:
        yield running


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class PproxyServer:
    """A pproxy SOCKS5 listener in a child process."""

    port: int
    process: subprocess.Popen[bytes]


def _start_pproxy(credentials: str = "") -> PproxyServer:
    for _attempt in range(5):
        port = _free_port()
        # --auth 0: check the credentials on every connection (pproxy otherwise remembers a
        # client address that authenticated once)
        listen = f"socks5://{LOCALHOST}:{port}{credentials}"
        process = subprocess.Popen(
            [sys.executable, "-m", "pproxy", "--auth", "0", "-l", listen],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection((LOCALHOST, port), timeout=1).close()
            except OSError:
                time.sleep(0.02)
                continue
            return PproxyServer(port, process)
        process.kill()
        process.wait()
    raise RuntimeError("pproxy did not start")


@pytest.fixture(scope="module")
def open_proxy() -> Iterator[PproxyServer]:
    server = _start_pproxy()
    yield server
    server.process.kill()
    server.process.wait()


@pytest.fixture(scope="module")
def auth_proxy() -> Iterator[PproxyServer]:
    server = _start_pproxy(f"#{USER}:{PASSWORD}")
    yield server
    server.process.kill()
    server.process.wait()


# --------------------------------------------------------------------------- through pproxy


@pytest.mark.parametrize("remote_dns", [True, False])
async def test_round_trip_through_socks5_for_every_inner_transport(
    broker: MosquittoBroker, auth_proxy: PproxyServer, remote_dns: bool
) -> None:
    for name, (inner, broker_port) in _inner_transports(broker).items():
        proxy = Socks5Proxy(
            LOCALHOST,
            auth_proxy.port,
            inner=inner,
            username=USER,
            password=PASSWORD,
            remote_dns=remote_dns,
        )
        with trio.fail_after(TIMEOUT):
            stream = await proxy.open_stream(LOCALHOST, broker_port, max_packet_size=MAX_PACKET)
            await qos_round_trip(stream, f"socks-{name}-{remote_dns}")


async def test_host_name_resolved_by_the_proxy_or_here(
    broker: MosquittoBroker, open_proxy: PproxyServer
) -> None:
    for remote_dns in (True, False):
        proxy = Socks5Proxy(LOCALHOST, open_proxy.port, remote_dns=remote_dns)
        with trio.fail_after(TIMEOUT):
            await connack_over(await proxy.open_stream("localhost", broker.port))


async def test_connection_through_socks5(broker: MosquittoBroker, open_proxy: PproxyServer) -> None:
    options = MqttOptions(
        "socks-conn", "localhost", broker.port, transport=Socks5Proxy(LOCALHOST, open_proxy.port)
    )
    with trio.fail_after(TIMEOUT):
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe("socks/#", QoS.EXACTLY_ONCE)
            await conn.client.publish("socks/a", b"through the tunnel", qos=QoS.EXACTLY_ONCE)
            async for message in conn.messages():
                assert message.payload == b"through the tunnel"
                break


@pytest.mark.parametrize(
    ("username", "password", "match"),
    [
        (USER, "wrong", "username/password"),
        (None, None, "does it require a username/password"),
    ],
)
async def test_wrong_or_missing_credentials(
    broker: MosquittoBroker,
    auth_proxy: PproxyServer,
    username: str | None,
    password: str | None,
    match: str,
) -> None:
    # pproxy closes the connection instead of answering with a failure status
    proxy = Socks5Proxy(LOCALHOST, auth_proxy.port, username=username, password=password)
    with trio.fail_after(TIMEOUT), pytest.raises(ProxyError, match=match) as caught:
        await proxy.open_stream(LOCALHOST, broker.port)
    assert isinstance(caught.value, TransportError)


async def test_unreachable_proxy() -> None:
    proxy = Socks5Proxy(LOCALHOST, _free_port())
    with trio.fail_after(TIMEOUT), pytest.raises(ProxyError, match="unreachable"):
        await proxy.open_stream(LOCALHOST, 1883)


# --------------------------------------------------------------------------- scripted peer


@dataclass
class ScriptedSocks:
    """A SOCKS5 server that answers with canned bytes, one byte per send, and records
    what the client sent."""

    method: int = 0x00
    auth_status: int = 0
    reply: bytes = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x12\x34"
    tunnel: bytes = b"after"  # sent after a success reply, as if from the broker
    received: list[bytes] = field(default_factory=list)

    async def handler(self, stream: trio.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await self._serve(stream)

    async def _read(self, stream: trio.SocketStream, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = await stream.receive_some(count - len(data))
            if not chunk:
                raise trio.BrokenResourceError
            data += chunk
        self.received.append(data)
        return data

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        for byte in data:
            await stream.send_all(bytes((byte,)))

    async def _serve(self, stream: trio.SocketStream) -> None:
        _version, count = await self._read(stream, 2)
        await self._read(stream, count)
        await self._send(stream, bytes((5, self.method)))
        if self.method == 0xFF or self.method not in (0, 2):
            return
        if self.method == 2:
            _version, user_length = await self._read(stream, 2)
            await self._read(stream, user_length)
            (password_length,) = await self._read(stream, 1)
            await self._read(stream, password_length)
            await self._send(stream, bytes((1, self.auth_status)))
            if self.auth_status:
                return
        _version, _command, _reserved, address_type = await self._read(stream, 4)
        if address_type == 1:
            await self._read(stream, 4 + 2)
        elif address_type == 4:
            await self._read(stream, 16 + 2)
        else:
            (length,) = await self._read(stream, 1)
            await self._read(stream, length + 2)
        await self._send(stream, self.reply)
        if self.tunnel:
            await self._send(stream, self.tunnel)  # the tunnel's first bytes: not ours to read
            await trio.sleep_forever()


async def _run_scripted(script: ScriptedSocks, proxy_kwargs: dict[str, object]) -> bytes:
    """Open a tunnel through ``script``; return the tunnel's first 5 bytes or raise the error."""
    data = b""
    error: ProxyError | None = None
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, script.handler, 0)
        port = listeners[0].socket.getsockname()[1]
        proxy = Socks5Proxy(LOCALHOST, port, **proxy_kwargs)  # type: ignore[arg-type]
        try:
            with trio.fail_after(TIMEOUT):
                stream = await proxy.open_stream("broker.example", 8883)
                while len(data) < 5:
                    data += await stream.receive_some(5 - len(data))
                await stream.aclose()
        except ProxyError as exc:
            error = exc
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return data


@pytest.mark.parametrize(
    "bound",
    [
        b"\x01\x7f\x00\x00\x01\x12\x34",
        b"\x04" + bytes(16) + b"\x12\x34",
        b"\x03\x09localhost\x12\x34",
    ],
)
async def test_request_bytes_and_every_bound_address_type(bound: bytes) -> None:
    script = ScriptedSocks(method=2, reply=b"\x05\x00\x00" + bound)
    data = await _run_scripted(script, {"username": "me", "password": "pw"})
    assert data == b"after"  # the tunnel starts exactly after the reply
    assert script.received == [
        b"\x05\x02",
        b"\x00\x02",  # no authentication, user/password
        b"\x01\x02",
        b"me",
        b"\x02",
        b"pw",
        b"\x05\x01\x00\x03",  # CONNECT, domain name
        b"\x0e",
        b"broker.example\x22\xb3",  # port 8883
    ]


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", "reply 5 \\(connection refused\\)"),
        (b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00", "reply 2 \\(connection not allowed"),
        (b"\x05\x09\x00\x01\x00\x00\x00\x00\x00\x00", "reply 9 \\(unknown error\\)"),
    ],
)
async def test_refusals_carry_the_reply_code(reply: bytes, match: str) -> None:
    with pytest.raises(ProxyError, match=match) as caught:
        await _run_scripted(ScriptedSocks(reply=reply), {})
    assert caught.value.socks_reply == reply[1]


@pytest.mark.parametrize(
    ("script", "kwargs", "match"),
    [
        (ScriptedSocks(method=0xFF), {}, "accepts none of our methods"),
        (ScriptedSocks(method=0x01), {}, "chose a method we did not offer"),
        (ScriptedSocks(method=2, auth_status=1), {"username": "u", "password": "p"}, "refused"),
        (ScriptedSocks(reply=b"\x04\x00\x00\x01"), {}, "invalid reply \\(version 4\\)"),
        (ScriptedSocks(reply=b"\x05\x00\x00\x07"), {}, "invalid reply \\(address type 7\\)"),
        (ScriptedSocks(reply=b"\x05\x00\x00", tunnel=b""), {}, "closed the connection"),
    ],
)
async def test_misbehaving_proxy(
    script: ScriptedSocks, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ProxyError, match=match):
        await _run_scripted(script, kwargs)


async def test_an_http_server_is_not_a_socks5_proxy() -> None:
    async def http(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(100)
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, http, 0)
        proxy = Socks5Proxy(LOCALHOST, listeners[0].socket.getsockname()[1])
        with trio.fail_after(TIMEOUT), pytest.raises(ProxyError, match="does not speak SOCKS5"):
            await proxy.open_stream(LOCALHOST, 1883)
        nursery.cancel_scope.cancel()


def test_options_are_validated() -> None:
    with pytest.raises(InvalidOptionError, match="empty"):
        Socks5Proxy("")
    with pytest.raises(InvalidOptionError, match="port"):
        Socks5Proxy("proxy", 70000)
    with pytest.raises(InvalidOptionError, match="both"):
        Socks5Proxy("proxy", username="only-me")
    with pytest.raises(InvalidOptionError, match="1 to 255 bytes"):
        Socks5Proxy("proxy", username="u", password="x" * 256)
    with pytest.raises(InvalidOptionError, match="1 to 255 bytes"):
        Socks5Proxy("proxy", username="", password="p")
    with pytest.raises(InvalidOptionError, match="tunnel"):
        Socks5Proxy("proxy", inner=object())  # type: ignore[arg-type]
    assert "secret" not in repr(Socks5Proxy("proxy", username="u", password="secret"))
    assert Socks5Proxy("proxy").inner == TcpTransport()


# --------------------------------------------------------------------------- the CLI


def test_cli_publishes_and_subscribes_through_the_proxy(
    broker: MosquittoBroker, auth_proxy: PproxyServer, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = f"socks5h://{USER}:{quote(PASSWORD)}@{LOCALHOST}:{auth_proxy.port}"
    where = ["-h", "localhost", "-p", str(broker.port), "--proxy", proxy]
    assert main(["pub", *where, "-t", "cli/socks", "-m", "hi", "-r", "-q", "1"]) == 0
    assert main(["sub", *where, "-t", "cli/socks", "-C", "1", "-W", "10", "-d"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "hi\n"
    assert f"via SOCKS5 proxy {LOCALHOST}:{auth_proxy.port}" in captured.err
    # the same through a URL's proxy= query key
    url = f"mqtt://localhost:{broker.port}/?proxy={quote(proxy, safe='')}"
    assert main(["sub", "--url", url, "-t", "cli/socks", "-C", "1", "-W", "10"]) == 0
    assert capsys.readouterr().out == "hi\n"


def test_cli_proxy_flag_conflicts(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["pub", "-t", "x", "-n", "--proxy", "socks5://p", "--url"]
    assert main([*argv, "mqtt://b/?proxy=http://q"]) == 2
    assert "either as --proxy or in the URL" in capsys.readouterr().err
    assert main([*argv, "unix:///tmp/socket"]) == 2
    assert "cannot go through a proxy" in capsys.readouterr().err
    assert main(["pub", "-t", "x", "-n", "--proxy", "gopher://p"]) == 2
    assert "unknown proxy URL scheme" in capsys.readouterr().err
