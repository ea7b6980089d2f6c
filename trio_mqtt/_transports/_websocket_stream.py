"""The WebSocket side of MQTT over WebSocket: the opening handshake and the byte stream.

Kept apart from the transport's options (:mod:`._websocket`) so that wsproto is imported only
when a WebSocket connection is actually made.
"""

from __future__ import annotations

import contextlib

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import (
    LocalProtocolError as WsLocalProtocolError,
    RemoteProtocolError as WsRemoteProtocolError,
)

from .._core._errors import RemoteProtocolError, TransportError
from .._core._reason_codes import ReasonCode
from ._errors import WebSocketError, translate_stream_error
from ._websocket_request import WebSocketRequest

__all__ = ["WebSocketStream", "handshake"]

_RECEIVE_SIZE = 65536
_CLOSE_TIMEOUT = 1.0


async def handshake(
    stream: trio.abc.Stream, request: WebSocketRequest, subprotocol: str, max_packet_size: int
) -> WebSocketStream:
    where = f"WebSocket upgrade at {request.url}"
    ws = WSConnection(ConnectionType.CLIENT)
    opening = Request(
        host=request.host_header,
        target=request.path,
        subprotocols=[subprotocol],
        extra_headers=[(name.encode(), value.encode()) for name, value in request.headers],
    )
    try:
        await stream.send_all(ws.send(opening))
        rejected: RejectConnection | None = None
        body = b""
        while True:
            data = await stream.receive_some(_RECEIVE_SIZE)
            if not data:
                if rejected is not None:
                    break
                raise WebSocketError(f"{where}: connection closed during the handshake")
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    if event.subprotocol not in (None, subprotocol):
                        raise WebSocketError(
                            f"{where}: server chose subprotocol {event.subprotocol!r}"
                        )
                    return WebSocketStream(stream, ws, max_message_size=max_packet_size)
                if isinstance(event, RejectConnection):
                    rejected = event
                    if not event.has_body:
                        break
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished or len(body) > 200:
                        break
            if rejected is not None and (not rejected.has_body or body):
                break
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        error = translate_stream_error(exc, where)
        if type(error) is TransportError:  # keep TLS errors (WSS) typed as such
            error = WebSocketError(str(error))
        raise error from exc
    except WsRemoteProtocolError as exc:
        raise WebSocketError(f"{where}: invalid handshake response: {exc}") from exc
    assert rejected is not None
    detail = body[:200].decode("utf-8", "replace").strip()
    raise WebSocketError(
        f"{where}: refused with HTTP {rejected.status_code}" + (f": {detail}" if detail else ""),
        status_code=rejected.status_code,
    )


class WebSocketStream(trio.abc.Stream):
    """A byte stream carried in binary WebSocket messages (see the module notes).

    Built by :class:`WebSocketTransport`; not meant to be created directly.

    Attributes:
        transport_stream: the stream under the WebSocket (TCP or TLS).
        max_message_size: the longest message accepted from the peer in bytes (0 = no limit).
    """

    def __init__(
        self, transport_stream: trio.abc.Stream, ws: WSConnection, *, max_message_size: int
    ) -> None:
        self.transport_stream = transport_stream
        self.max_message_size = max_message_size
        self._ws = ws
        self._buffer = bytearray()
        self._message_size = 0
        self._peer_closed = False
        self._closed = False
        self._sending = False
        self._receiving = False
        self._send_lock = trio.StrictFIFOLock()
        self._pending_replies: list[bytes] = []

    async def _send_frames(self, data: bytes) -> None:
        async with self._send_lock:
            await self.transport_stream.send_all(data)
            while self._pending_replies:
                await self.transport_stream.send_all(self._pending_replies.pop(0))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one binary WebSocket message."""
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket stream was closed")
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            if self._ws.state is not ConnectionState.OPEN:
                await trio.lowlevel.checkpoint()
                raise trio.BrokenResourceError("the WebSocket connection is closing")
            if not data:
                await trio.lowlevel.checkpoint()
                return
            frames = self._ws.send(BytesMessage(data=bytes(data)))
            await self._send_frames(frames)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the stream below can take more data."""
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return payload bytes of incoming binary messages; ``b""`` once the peer closed.

        Raises:
            RemoteProtocolError: a text message arrived (MQTT-6.0.0-1) or a message exceeded
                :attr:`max_message_size`.
        """
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket stream was closed")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            while not self._buffer:
                await self._handle_events()
                if self._buffer or self._peer_closed:
                    break
                data = await self.transport_stream.receive_some(_RECEIVE_SIZE)
                if self._ws.state is ConnectionState.CLOSED:
                    # Closing handshake done: whatever else arrives is not ours to read.
                    self._peer_closed = self._peer_closed or not data
                    continue
                try:
                    self._ws.receive_data(bytes(data) if data else None)
                except WsRemoteProtocolError as exc:
                    raise RemoteProtocolError(f"invalid WebSocket data: {exc}") from exc
            if not self._buffer:
                await trio.lowlevel.checkpoint()
                return b""
            size = len(self._buffer) if max_bytes is None else max_bytes
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            return chunk
        finally:
            self._receiving = False

    async def _handle_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, BytesMessage):
                self._message_size += len(event.data)
                if self.max_message_size and self._message_size > self.max_message_size:
                    await self._fail(CloseReason.MESSAGE_TOO_BIG)
                    raise RemoteProtocolError(
                        f"WebSocket message longer than the maximum packet size "
                        f"({self.max_message_size} bytes)",
                        reason_code=ReasonCode.PACKET_TOO_LARGE,
                    )
                self._buffer += event.data
                if event.message_finished:
                    self._message_size = 0
            elif isinstance(event, TextMessage):
                await self._fail(CloseReason.UNSUPPORTED_DATA)
                raise RemoteProtocolError(
                    "received a WebSocket text message; MQTT uses binary messages only "
                    "(MQTT-6.0.0-1)"
                )
            elif isinstance(event, Ping):
                await self._reply(event)
            elif isinstance(event, CloseConnection):
                self._peer_closed = True
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._reply(event)
            # Pong and anything else carries nothing for MQTT.

    async def _reply(self, event: Event) -> None:
        assert isinstance(event, (Ping, CloseConnection))
        with contextlib.suppress(trio.BrokenResourceError, WsLocalProtocolError):
            frames = self._ws.send(event.response())
            if self._send_lock.locked():
                # A send is in progress (perhaps stalled by a peer that is not reading):
                # leave the reply to it rather than stop reading until it is done.
                self._pending_replies.append(frames)
            else:
                await self._send_frames(frames)

    async def _fail(self, code: int) -> None:
        """Send a close frame with ``code`` (best effort) after a protocol violation."""
        if self._ws.state is ConnectionState.OPEN:
            try:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await self._send_frames(self._ws.send(CloseConnection(code=code)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, WsLocalProtocolError):
                pass
        self._peer_closed = True

    async def aclose(self) -> None:
        """Send a normal close frame (best effort, briefly) and close the stream below."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self._ws.state is ConnectionState.OPEN:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await self._send_frames(self._ws.send(CloseConnection(code=1000)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, WsLocalProtocolError):
            pass
        finally:
            await self.transport_stream.aclose()
