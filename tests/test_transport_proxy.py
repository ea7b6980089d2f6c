"""HTTP CONNECT proxy: every tunnelled transport against mosquitto, through a small Trio proxy
that counts tunnels and checks basic authentication."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import trio
import trustme
from test_transports import LOCALHOST, MAX_PACKET, TIMEOUT, RawMqtt, connack_over, qos_round_trip

from trio_mqtt import TransportError
from trio_mqtt._transports import (
    CertificateVerificationError,
    HttpProxy,
    ProxyError,
    StreamLayer,
    TcpTransport,
    TlsTransport,
    WebSocketTransport,
)
from trio_mqtt.testing import MosquittoBroker


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker(
        tls=True, websockets=True, websockets_tls=True, log_types=("error", "warning")
    ) as running:
        yield running


async def _pipe(source: trio.abc.Stream, sink: trio.abc.Stream, scope: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        scope.cancel()


@dataclass
class FakeProxy:
    """A minimal HTTP CONNECT proxy: optional basic auth, counts the tunnels it opened."""

    credentials: tuple[str, str] | None = None
    eager_reply: bytes = b""
    tunnels: int = 0
    targets: list[str] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)

    async def handler(self, stream: trio.abc.Stream) -> None:
        try:
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def _serve(self, stream: trio.abc.Stream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ")
        assert method == "CONNECT"
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["host"] == target
        self.auth_headers.append(headers.get("proxy-authorization"))
        if self.credentials is not None:
            secret = base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {secret}":
                await stream.send_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                )
                return
        if self.eager_reply:
            # A "proxy" that answers for the broker at once, in the same segment as its 200.
            await stream.send_all(b"HTTP/1.1 200 OK\r\n\r\n" + self.eager_reply)
            self.tunnels += 1
            await stream.receive_some(4096)
            return
        host, _, port = target.rpartition(":")
        try:
            upstream = await trio.open_tcp_stream(host.strip("[]"), int(port))
        except OSError:
            await stream.send_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.tunnels += 1
        self.targets.append(target)
        await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        async with upstream, trio.open_nursery() as nursery:
            if rest:
                await upstream.send_all(rest)
            nursery.start_soon(_pipe, stream, upstream, nursery.cancel_scope)
            nursery.start_soon(_pipe, upstream, stream, nursery.cancel_scope)


async def start_proxy(
    nursery: trio.Nursery, proxy: FakeProxy, tls: ssl.SSLContext | None = None
) -> int:
    if tls is None:
        listeners = await nursery.start(trio.serve_tcp, proxy.handler, 0)
        return int(listeners[0].socket.getsockname()[1])
    listeners = await nursery.start(trio.serve_ssl_over_tcp, proxy.handler, 0, tls)
    return int(listeners[0].transport_listener.socket.getsockname()[1])


def _inner_transports(broker: MosquittoBroker) -> dict[str, tuple[StreamLayer, int]]:
    tls = TlsTransport(ca_file=broker.ca_pem_path)
    return {
        "tcp": (TcpTransport(), broker.port),
        "tls": (tls, broker.tls_port),
        "ws": (WebSocketTransport(), broker.ws_port),
        "wss": (WebSocketTransport(tls=tls), broker.wss_port),
    }


async def test_qos_round_trip_through_the_proxy_for_every_inner_transport(
    broker: MosquittoBroker,
) -> None:
    fake = FakeProxy(credentials=("proxy-user", "p@ss:word"))
    async with trio.open_nursery() as nursery:
        port = await start_proxy(nursery, fake)
        for name, (inner, broker_port) in _inner_transports(broker).items():
            proxy = HttpProxy(
                LOCALHOST, port, inner=inner, username="proxy-user", password="p@ss:word"
            )
            with trio.fail_after(TIMEOUT):
                stream = await proxy.open_stream(LOCALHOST, broker_port, max_packet_size=MAX_PACKET)
                await qos_round_trip(stream, f"proxied-{name}")
        nursery.cancel_scope.cancel()
    assert fake.tunnels == 4
    assert fake.targets == [f"{LOCALHOST}:{p}" for _, p in _inner_transports(broker).values()]


async def test_proxy_authentication_is_checked(broker: MosquittoBroker) -> None:
    fake = FakeProxy(credentials=("alice", "right"))
    async with trio.open_nursery() as nursery:
        port = await start_proxy(nursery, fake)
        for proxy in (
            HttpProxy(LOCALHOST, port, username="alice", password="wrong"),
            HttpProxy(LOCALHOST, port),
        ):
            with trio.fail_after(TIMEOUT), pytest.raises(ProxyError, match="407") as caught:
                await proxy.open_stream(LOCALHOST, broker.port)
            assert caught.value.status_code == 407
            assert isinstance(caught.value, TransportError)
        nursery.cancel_scope.cancel()
    assert fake.tunnels == 0
    assert fake.auth_headers == ["Basic " + base64.b64encode(b"alice:wrong").decode(), None]


async def test_tls_to_the_proxy_and_tls_to_the_broker(broker: MosquittoBroker) -> None:
    proxy_ca = trustme.CA()
    proxy_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    proxy_ca.issue_cert(LOCALHOST).configure_cert(proxy_context)
    fake = FakeProxy()
    async with trio.open_nursery() as nursery:
        port = await start_proxy(nursery, fake, tls=proxy_context)
        proxy = HttpProxy(
            LOCALHOST,
            port,
            inner=TlsTransport(ca_file=broker.ca_pem_path),
            tls=TlsTransport(ca_data=proxy_ca.cert_pem.bytes().decode()),
        )
        with trio.fail_after(TIMEOUT):
            await connack_over(await proxy.open_stream(LOCALHOST, broker.tls_port))
        # The proxy's certificate is checked too: with the broker's CA it is refused.
        wrong = HttpProxy(LOCALHOST, port, tls=TlsTransport(ca_file=broker.ca_pem_path))
        with trio.fail_after(TIMEOUT), pytest.raises(CertificateVerificationError):
            await wrong.open_stream(LOCALHOST, broker.port)
        nursery.cancel_scope.cancel()
    assert fake.tunnels == 1


async def test_refused_tunnel_and_unreachable_proxy() -> None:
    fake = FakeProxy()
    async with trio.open_nursery() as nursery:
        port = await start_proxy(nursery, fake)
        with trio.socket.socket() as closed:  # bound but not listening: refuses connections
            await closed.bind((LOCALHOST, 0))
            dead_port = closed.getsockname()[1]
            with trio.fail_after(TIMEOUT), pytest.raises(ProxyError, match="502") as caught:
                await HttpProxy(LOCALHOST, port).open_stream(LOCALHOST, dead_port)
            assert caught.value.status_code == 502
            with trio.fail_after(TIMEOUT), pytest.raises(ProxyError, match="unreachable"):
                await HttpProxy(LOCALHOST, dead_port).open_stream(LOCALHOST, port)
        nursery.cancel_scope.cancel()


async def test_bytes_sent_right_after_the_proxy_answer_are_kept() -> None:
    fake = FakeProxy(eager_reply=b"\x20\x02\x00\x00")
    async with trio.open_nursery() as nursery:
        port = await start_proxy(nursery, fake)
        with trio.fail_after(TIMEOUT):
            stream = await HttpProxy(LOCALHOST, port).open_stream("broker.invalid", 1883)
            assert await RawMqtt(stream).packet() == (2, 0, b"\x00\x00")
            await stream.aclose()
        nursery.cancel_scope.cancel()
    assert fake.tunnels == 1
