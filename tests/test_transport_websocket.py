"""WebSocket adapter against a scripted wsproto server: headers, framing, limits, closing.

mosquitto (see test_transports.py) proves interoperability; this fake server controls the
framing exactly, so it can split one MQTT packet over many frames and messages, pack several
packets in one message, interleave pings, send text, or refuse the upgrade.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import pytest
import trio
import trio.testing
from test_transports import LOCALHOST, TIMEOUT, RawMqtt, connect_packet, publish_packet
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from trio_mqtt import RemoteProtocolError
from trio_mqtt._core._reason_codes import ReasonCode
from trio_mqtt._transports import (
    TcpTransport,
    WebSocketError,
    WebSocketRequest,
    WebSocketTransport,
)


@dataclass
class ServerSide:
    """The server end of one WebSocket connection, driven by a test script."""

    stream: trio.abc.Stream
    ws: WSConnection
    received: bytearray = field(default_factory=bytearray)
    pongs: int = 0
    close_code: int | None = None

    async def send(self, data: bytes, *, finished: bool = True) -> None:
        await self.stream.send_all(self.ws.send(BytesMessage(data=data, message_finished=finished)))

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def ping(self) -> None:
        await self.stream.send_all(self.ws.send(Ping(payload=b"hi")))

    async def close(self, code: int = 1000) -> None:
        await self.stream.send_all(self.ws.send(CloseConnection(code=code)))

    async def pump(self, until: Callable[[], bool]) -> None:
        """Read from the client until ``until()`` holds (or the client went away)."""
        while not until():
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, BytesMessage):
                    self.received += event.data
                elif isinstance(event, Pong):
                    self.pongs += 1
                elif isinstance(event, CloseConnection) and self.close_code is None:
                    self.close_code = event.code
                    if self.ws.state.name == "REMOTE_CLOSING":
                        await self.stream.send_all(self.ws.send(event.response()))
            if not data:
                return


Script = Callable[[ServerSide], Awaitable[None]]


@dataclass
class FakeServer:
    script: Script
    reject_status: int | None = None
    subprotocol: str = "mqtt"
    requests: list[Request] = field(default_factory=list)
    sides: list[ServerSide] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    async def handler(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            while not self.requests:
                ws.receive_data(await stream.receive_some(65536))
                self.requests += [e for e in ws.events() if isinstance(e, Request)]
            if self.reject_status is not None:
                reject = RejectConnection(status_code=self.reject_status, has_body=False)
                await stream.send_all(ws.send(reject))
                return
            await stream.send_all(ws.send(AcceptConnection(subprotocol=self.subprotocol)))
            side = ServerSide(stream, ws)
            self.sides.append(side)
            await self.script(side)
        finally:
            await stream.aclose()
            self.done.set()


async def run_fake(
    nursery: trio.Nursery, script: Script, **options: object
) -> tuple[FakeServer, int]:
    server = FakeServer(script, **options)  # type: ignore[arg-type]
    listeners = await nursery.start(trio.serve_tcp, server.handler, 0)
    return server, listeners[0].socket.getsockname()[1]


async def idle(side: ServerSide) -> None:
    await side.pump(lambda: False)


async def test_headers_path_and_request_modifier_reach_the_server() -> None:
    seen: list[WebSocketRequest] = []

    async def sign(request: WebSocketRequest) -> WebSocketRequest:
        seen.append(request)
        signed = ("X-Signature", f"sig({request.url})")
        return replace(request, path=request.path + "?token=t1", headers=(*request.headers, signed))

    async def script(side: ServerSide) -> None:
        await side.pump(lambda: len(side.received) >= 14)
        await side.send(b"\x20")  # CONNACK split across two messages (MQTT-6.0.0-2) ...
        await side.send(b"\x02\x00\x00")
        await side.send(b"\xd0\x00\xd0\x00")  # ... and two PINGRESPs sharing one message.
        await idle(side)

    transport = WebSocketTransport(
        path="/mqtt", headers=[("Authorization", "Bearer abc")], request_modifier=sign
    )
    async with trio.open_nursery() as nursery:
        server, port = await run_fake(nursery, script)
        with trio.fail_after(TIMEOUT):
            stream = await transport.open_stream(LOCALHOST, port, max_packet_size=1000)
            raw = RawMqtt(stream)
            await raw.connect("ws-client")
            assert await raw.packet() == (13, 0, b"")
            assert await raw.packet() == (13, 0, b"")
            await stream.aclose()
            await server.done.wait()
        nursery.cancel_scope.cancel()
    assert bytes(server.sides[0].received) == connect_packet("ws-client")
    request = server.requests[0]
    assert request.target == "/mqtt?token=t1"
    assert request.subprotocols == ["mqtt"]
    headers = {name.decode().lower(): value.decode() for name, value in request.extra_headers}
    assert headers["authorization"] == "Bearer abc"
    assert headers["x-signature"] == f"sig(ws://{LOCALHOST}:{port}/mqtt)"
    assert request.host == f"{LOCALHOST}:{port}"
    assert seen[0].secure is False
    assert server.sides[0].close_code == 1000  # aclose() says goodbye properly


async def test_large_packets_span_frames_and_messages_with_pings_between() -> None:
    big = publish_packet("big/topic", bytes(range(256)) * 1200, 0)  # ~300 KB
    assert len(big) > 300_000

    async def script(side: ServerSide) -> None:
        await side.pump(lambda: len(side.received) >= len(big))
        # One packet in many frames of one message, a ping between the fragments, then the
        # same packet again spread over several messages.
        for start in range(0, len(big), 7000):
            chunk = big[start : start + 7000]
            await side.send(chunk, finished=start + 7000 >= len(big))
            if start == 70000:
                await side.ping()
        for start in range(0, len(big), 100_000):
            await side.send(big[start : start + 100_000])
        await side.pump(lambda: side.pongs >= 1)
        await idle(side)

    async with trio.open_nursery() as nursery:
        server, port = await run_fake(nursery, script)
        with trio.fail_after(TIMEOUT):
            stream = await WebSocketTransport().open_stream(
                LOCALHOST, port, max_packet_size=len(big)
            )
            await stream.send_all(big)  # one message much larger than any read
            raw = RawMqtt(stream)
            for _ in range(2):
                kind, _flags, body = await raw.packet()
                assert kind == 3
                assert len(body) == len(big) - 4
            await stream.aclose()
            await server.done.wait()
        nursery.cancel_scope.cancel()
    side = server.sides[0]
    assert bytes(side.received) == big
    assert side.pongs == 1


async def test_text_message_is_a_protocol_error() -> None:
    async def script(side: ServerSide) -> None:
        await side.send_text("hello")
        await idle(side)

    async with trio.open_nursery() as nursery:
        server, port = await run_fake(nursery, script)
        with trio.fail_after(TIMEOUT):
            stream = await WebSocketTransport().open_stream(LOCALHOST, port, max_packet_size=100)
            with pytest.raises(RemoteProtocolError, match=r"MQTT-6\.0\.0-1"):
                await stream.receive_some()
            await stream.aclose()
            await server.done.wait()
        nursery.cancel_scope.cancel()
    assert server.sides[0].close_code == 1003  # unsupported data


async def test_message_longer_than_the_maximum_packet_size_is_refused() -> None:
    async def script(side: ServerSide) -> None:
        await side.send(b"\x30" + b"x" * 2000)
        await idle(side)

    async with trio.open_nursery() as nursery:
        server, port = await run_fake(nursery, script)
        with trio.fail_after(TIMEOUT):
            stream = await WebSocketTransport().open_stream(LOCALHOST, port, max_packet_size=1000)
            with pytest.raises(RemoteProtocolError, match="1000 bytes") as caught:
                await stream.receive_some()
            assert caught.value.reason_code == ReasonCode.PACKET_TOO_LARGE
            await stream.aclose()
            await server.done.wait()
        nursery.cancel_scope.cancel()
    assert server.sides[0].close_code == 1009  # message too big


async def test_server_close_ends_the_stream() -> None:
    async def script(side: ServerSide) -> None:
        await side.close(1001)
        await side.pump(lambda: side.close_code is not None)

    async with trio.open_nursery() as nursery:
        server, port = await run_fake(nursery, script)
        with trio.fail_after(TIMEOUT):
            stream = await WebSocketTransport().open_stream(LOCALHOST, port, max_packet_size=100)
            assert await stream.receive_some() == b""
            await server.done.wait()
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"\xc0\x00")
            await stream.aclose()
        nursery.cancel_scope.cancel()
    assert server.sides[0].close_code == 1001  # our reply echoes the server's code


async def test_refused_upgrade_reports_the_status() -> None:
    async with trio.open_nursery() as nursery:
        _server, port = await run_fake(nursery, idle, reject_status=403)
        with trio.fail_after(TIMEOUT), pytest.raises(WebSocketError, match="403") as caught:
            await WebSocketTransport().open_stream(LOCALHOST, port, max_packet_size=100)
        assert caught.value.status_code == 403
        nursery.cancel_scope.cancel()


def test_request_url_and_host_header() -> None:
    request = WebSocketRequest("::1", 443, True, "/mqtt")
    assert request.host_header == "[::1]"
    assert request.url == "wss://[::1]/mqtt"
    assert WebSocketRequest("broker", 8080, False, "/").url == "ws://broker:8080/"


async def test_ping_does_not_stall_reading_while_a_send_is_blocked() -> None:
    go = trio.Event()
    got_reply = trio.Event()
    payload = b"\x30" + bytes(16 * 1024 * 1024)  # far more than socket buffers hold

    async def script(side: ServerSide) -> None:
        await go.wait()  # not reading: the client's big send stalls on full buffers
        await side.ping()
        await side.send(b"\xd0\x00")
        await got_reply.wait()  # still not reading until the client has read past the ping
        await side.pump(lambda: len(side.received) >= len(payload) and side.pongs >= 1)
        await idle(side)

    async with trio.open_nursery() as nursery:
        server, port = await run_fake(nursery, script)
        with trio.fail_after(TIMEOUT):
            transport = WebSocketTransport(tcp=TcpTransport(send_buffer_size=65536))
            stream = await transport.open_stream(LOCALHOST, port, max_packet_size=100)
            sent = trio.Event()

            async def send_big() -> None:
                await stream.send_all(payload)
                sent.set()

            nursery.start_soon(send_big)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            go.set()
            # The reader answers the ping without waiting for the stalled writer.
            assert await stream.receive_some() == b"\xd0\x00"
            got_reply.set()
            await sent.wait()
            await stream.aclose()
            await server.done.wait()
        nursery.cancel_scope.cancel()
    side = server.sides[0]
    assert bytes(side.received) == payload
    assert side.pongs == 1
