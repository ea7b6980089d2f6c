"""The event loop: the tasks that run one MQTT session over Trio.

Theory of operation. One :class:`~trio_mqtt.sansio.ClientState` holds all protocol state. Tasks
in the connection's nursery call into it synchronously (so no task switch happens halfway
through a state update) and then collect the events it produced:

* the *session* task connects, runs one network connection at a time, and reconnects;
* per network connection, a *reader* feeds received bytes in, a *writer* sends whatever the
  state machine queued (coalescing what is ready into few ``send_all`` calls), and a
  *keepalive* task sleeps until the deadline the state machine computes;
* two *intake* tasks take requests from the client channels: control requests always, publishes
  only while the state machine's waiting queue has room (which blocks publishers when the
  outgoing window is full, without holding back acks or subscribes). When nothing is queued, a
  publish skips the channel and enters the state machine in the caller's task.

Connection errors become events: with a reconnect policy the session task reconnects by itself
(reporting ``Disconnected`` and ``Reconnecting``); without one, ``poll()`` raises the error and
the next ``poll()`` reconnects, as in rumqttc. The public face of all this is
:class:`~trio_mqtt.MqttConnection` in ``_connection.py``.
"""

from __future__ import annotations

import logging
import math
import sys
from contextlib import contextmanager
from typing import Any

import trio

from ._client import Client
from ._core._codec import encoded_size
from ._core._errors import (
    ConnectionClosed,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    InvalidOptionError,
    LocalProtocolError,
    MqttError,
    PacketTooLargeError,
    ProtocolError,
    RemoteProtocolError,
    RequestsDone,
)
from ._core._events import (
    Event,
    Incoming,
    Outgoing,
    PublishDone,
    SubscribeDone,
    UnsubscribeDone,
)
from ._core._packets import NO_PROPERTIES, Publish
from ._core._state import ClientState, ConnectionState
from ._core._topics import FilterTree
from ._dispatch import (
    Disconnected,
    EventBuffer,
    Reconnecting,
    Route,
    Signal,
)
from ._options import MqttOptions
from ._requests import (
    AckRequest,
    DisconnectRequest,
    PublishRequest,
    PublishResult,
    ReauthRequest,
    Request,
    SubscribeRequest,
    SubscribeResult,
    Tracker,
    UnsubscribeRequest,
    UnsubscribeResult,
)
from ._store import StoreBinding
from ._transports import translate_stream_error

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["EventLoop", "group_leaves"]

logger = logging.getLogger("trio_mqtt")

#: bytes asked of the transport per read; 256 KiB reads cut the scheduling passes per large
#: message (16 KiB QoS 0: 21k -> 24k msg/s) and cost nothing measurable for small ones
RECEIVE_SIZE = 262144
COALESCE_BYTES = 65536
COALESCE_ROUNDS = 32
#: quiet scheduling rounds after which the writer counts as idle and sends at once
IDLE_ROUNDS = 2
#: publishes that may wait for the writer before publishers are held back
MAX_UNFLUSHED = 256
FATAL_FLUSH_TIMEOUT = 1.0
#: longest wait for the broker to close its side after our DISCONNECT
DISCONNECT_LINGER = 1.0


@contextmanager
def _translate_io_errors(what: str) -> Any:
    """The one seam where trio, OS and TLS errors of an open stream become trio-mqtt errors.

    The result is a :class:`~trio_mqtt.TransportError` (a :class:`~trio_mqtt.ConnectionLost`),
    as specific as the cause allows: a TLS 1.3 broker refusing our certificate says so only on
    the first read, and that becomes a :class:`~trio_mqtt.TlsError`.
    """
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise translate_stream_error(exc, what) from exc


class EventLoop:
    """Owns the state machine, the buffers and the tasks of one session (see the module doc)."""

    def __init__(self, options: MqttOptions, *, event_capacity: int = 1000) -> None:
        if event_capacity < 1:
            raise InvalidOptionError("event_capacity must be at least 1")
        self.options = options
        self._state = ClientState(options.session_config())
        publish_send, self._publish_recv = trio.open_memory_channel[PublishRequest](
            options.request_capacity
        )
        control_send, self._control_recv = trio.open_memory_channel[Request](
            options.request_capacity
        )
        self._client = Client(self, publish_send, control_send)
        self._space = Signal()
        self._events = EventBuffer(event_capacity, self._space)
        self._routes: FilterTree[Route] = FilterTree()
        self._route_list: list[Route] = []
        self._writer_wakeup = Signal()
        self._window_wakeup = Signal()
        self._deadline_wakeup = Signal()
        self._session_wakeup = Signal()
        self._trackers: set[Tracker[Any]] = set()
        self._nursery: trio.Nursery | None = None
        self._io_scope: trio.CancelScope | None = None
        self._end: MqttError | None = None
        self._end_tracker: Tracker[None] | None = None
        self._finished = trio.Event()
        self._fatal: MqttError | None = None
        self._awaiting_reconnect = False
        self._intakes_done = 0
        #: publishes sitting in the publish channel (kept by the client handles)
        self._queued_publishes = 0
        #: publishes handed to the state machine since the writer last took its output
        self._unflushed = 0
        self._flushed = Signal()
        self._publish_limits = (options.max_outgoing_packet_size, 2, True)
        self._connects = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        store = options.session_store
        #: the session store's hooks (None without a store: nothing on the hot path)
        self._store = (
            None if store is None else StoreBinding(store, options.client_id, options.clean_start)
        )

    # ================================================================= validation
    def _check_publish(self, request: PublishRequest) -> None:
        """Refuse, in the caller's task, a publish the broker's limits forbid."""
        limit, max_qos, retain_ok = self._publish_limits
        if request.qos > max_qos:
            raise LocalProtocolError(f"the broker supports QoS up to {max_qos}, not {request.qos}")
        if request.retain and not retain_ok:
            raise LocalProtocolError("the broker does not support retained messages")
        if (
            len(request.payload) + 4 * len(request.topic) + 16 >= limit
            or request.properties is not NO_PROPERTIES
        ):
            size = encoded_size(
                Publish(
                    request.topic,
                    request.payload,
                    request.qos,
                    request.retain,
                    False,
                    1 if request.qos else 0,
                    request.properties,
                ),
                self.options.protocol_version,
            )
            if size > limit:
                raise PacketTooLargeError(size, limit)

    def _update_publish_limits(self) -> None:
        """Cache what the current CONNACK allows (checked on every publish)."""
        limit = self.options.max_outgoing_packet_size
        max_qos = 2
        retain_ok = True
        connack = self._state.connack
        if connack is not None:
            props = connack.properties
            if props.maximum_packet_size is not None:
                limit = min(limit, props.maximum_packet_size)
            if props.maximum_qos is not None:
                max_qos = props.maximum_qos
            retain_ok = props.retain_available != 0
        self._publish_limits = (limit, max_qos, retain_ok)

    # ================================================================= events
    def _collect(self) -> None:
        """Route the state machine's new events to trackers, routes and the event buffer."""
        events = self._state.take_events()
        if not events:
            return
        if self._store is not None:
            # the store holds events back while an incoming QoS 2 id is not yet durable
            events = self._store.record(events)
        self._route(events)

    def _route(self, events: list[Event]) -> None:
        buffer = self._events
        for event in events:
            kind = type(event)
            if kind is Outgoing:
                buffer.put(event)
            elif kind is Incoming:
                packet = event.packet  # type: ignore[union-attr]
                if type(packet) is Publish and self._route_list:
                    routes = self._routes.match(packet.topic)
                    if routes:
                        for route in routes:
                            route.put(packet)
                        continue
                buffer.put(event, data=type(packet) is Publish)
            elif kind is PublishDone:
                tracker = event.tag  # type: ignore[union-attr]
                if isinstance(tracker, Tracker):
                    self._trackers.discard(tracker)
                    tracker._resolve(
                        PublishResult(event.packet_id, event.reason_code, event.properties)  # type: ignore[union-attr]
                    )
            elif kind is SubscribeDone or kind is UnsubscribeDone:
                tracker = event.tag  # type: ignore[union-attr]
                if isinstance(tracker, Tracker):
                    self._trackers.discard(tracker)
                    result_type = SubscribeResult if kind is SubscribeDone else UnsubscribeResult
                    tracker._resolve(
                        result_type(event.packet_id, event.reason_codes, event.properties)  # type: ignore[union-attr]
                    )
            else:
                dropped_tag = getattr(event, "tag", None)
                if isinstance(dropped_tag, Tracker):
                    self._trackers.discard(dropped_tag)
                    dropped_tag._fail(
                        ConnectionLost("the broker lost the session; the message was dropped")
                    )
                buffer.put(event)

    def _needs_pause(self) -> bool:
        return self._events.full or any(route.full for route in self._route_list)

    def _report_failure(self, error: MqttError) -> None:
        self._events.put_failure(error)
        for route in self._route_list:
            route.put_failure(error)

    # ================================================================= requests
    async def _control_intake(self) -> None:
        async for request in self._control_recv:
            self._apply_control(request)
            self._collect()
            self._writer_wakeup.set()
        self._intake_finished()

    def _apply_control(self, request: Request) -> None:
        state = self._state
        now = trio.current_time()
        tracker = request.tracker
        try:
            if isinstance(request, SubscribeRequest):
                if tracker is not None:
                    self._trackers.add(tracker)
                state.subscribe(request.subscriptions, request.properties, tag=tracker, now=now)
            elif isinstance(request, UnsubscribeRequest):
                if tracker is not None:
                    self._trackers.add(tracker)
                state.unsubscribe(request.topic_filters, request.properties, tag=tracker, now=now)
            elif isinstance(request, AckRequest):
                state.ack(request.packet_id, request.reason_code, request.properties, now=now)
                if request.tracker is not None:
                    request.tracker._resolve(None)
            elif isinstance(request, DisconnectRequest):
                if request.graceful and self._nursery is not None:
                    self._nursery.start_soon(self._disconnect_after_grace, request)
                else:
                    self._close_locally(request)
            elif isinstance(request, ReauthRequest):
                state.reauthenticate(now)
        except MqttError as exc:
            if tracker is not None:
                self._trackers.discard(tracker)
                tracker._fail(exc)
            else:
                logger.warning("request %s failed: %s", type(request).__name__, exc)

    async def _publish_intake(self) -> None:
        state = self._state
        receive = self._publish_recv
        limit = self.options.inflight
        while True:
            try:
                request = await receive.receive()
            except trio.EndOfChannel:
                break
            # Hold the request (it still counts as queued, which keeps the fast path off and
            # the order intact) until the state machine has room: the waiting queue never
            # exceeds ``inflight``, wherever the publish came from.
            while state.waiting_count >= limit:
                await self._window_wakeup.wait()
            while self._unflushed >= MAX_UNFLUSHED:
                await self._flushed.wait()
            now = trio.current_time()
            while True:
                self._queued_publishes -= 1
                self._unflushed += 1
                self._apply_publish(request, now)
                if state.waiting_count >= limit or self._unflushed >= MAX_UNFLUSHED:
                    break
                try:
                    request = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            self._collect()
            self._writer_wakeup.set()
        self._intake_finished()

    def _apply_publish(self, request: PublishRequest, now: float) -> None:
        tracker = request.tracker
        try:
            if tracker is not None:
                self._trackers.add(tracker)
            self._state.publish(
                request.topic,
                request.payload,
                request.qos,
                request.retain,
                request.properties,
                tag=tracker,
                now=now,
            )
        except MqttError as exc:
            if tracker is not None:
                self._trackers.discard(tracker)
                tracker._fail(exc)
            else:
                logger.warning("publish to %r refused: %s", request.topic, exc)

    def _publish_directly(self, request: PublishRequest) -> bool:
        """The publish fast path: apply ``request`` now if nothing is queued ahead of it.

        Called from the publisher's task. The state machine call is synchronous, so this is
        as safe as the intake task doing it, and it saves a channel hop per message. Returns
        False (the caller then uses the channel) when earlier publishes still wait in the
        channel, or the state machine's waiting queue is full.
        """
        if (
            self._queued_publishes
            or self._unflushed >= MAX_UNFLUSHED
            or self._state.waiting_count >= self.options.inflight
            or self._end is not None
            or self._nursery is None
        ):
            return False
        self._apply_publish(request, trio.current_time())
        self._unflushed += 1
        self._collect()
        self._writer_wakeup.set()
        return True

    def _intake_finished(self) -> None:
        self._intakes_done += 1
        if self._intakes_done == 2 and self._end is None:
            logger.debug("every client handle is closed: finishing with RequestsDone")
            self._end = RequestsDone("every client handle was closed")
            self._writer_wakeup.set()
            self._session_wakeup.set()

    async def _disconnect_after_grace(self, request: DisconnectRequest) -> None:
        with trio.move_on_after(request.grace_period):
            await self._wait_idle()
        self._close_locally(request)

    async def _wait_idle(self) -> None:
        # Our own flows only: incoming messages the application has not acked (manual acks)
        # are its business, and waiting for them would only delay leaving.
        state = self._state
        while state.inflight_count or state.waiting_count or self._queued_publishes:
            if self._end is not None:
                return
            await self._window_wakeup.wait()

    def _close_locally(self, request: DisconnectRequest | None) -> None:
        """Queue DISCONNECT (when connected) and end the session after the writer flushed it."""
        if self._end is not None:
            if request is not None and request.tracker is not None:
                request.tracker._resolve(None)
            return
        state = self._state
        if state.state is ConnectionState.CONNECTED:
            if request is not None:
                state.disconnect(trio.current_time(), request.reason_code, request.properties)
            else:
                state.disconnect(trio.current_time())
            self._collect()
        self._end = ConnectionClosed("the connection was closed by the client")
        self._end_tracker = request.tracker if request is not None else None
        self._writer_wakeup.set()
        self._session_wakeup.set()

    # ================================================================= session
    async def _session(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session; with a session store, load it first and save it at the end."""
        store = self._store
        if store is None:
            await self._run_session(task_status)
            return
        try:
            await store.start(self._state)
            await self._run_session(task_status)
        finally:
            with trio.CancelScope(shield=True):
                await store.finish()

    async def _run_session(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, run, reconnect; ends when the session ends locally."""
        policy = self.options.reconnect
        attempt = 0
        started = False
        while self._end is None:
            try:
                stream = await self._establish()
            except (ConnectionLost, ConnectionRefused, ProtocolError) as exc:
                attempt += 1
                if not started and (policy is None or _exhausted(policy.max_attempts, attempt)):
                    raise
                logger.info("connection attempt %d failed: %s", attempt, exc)
                # Before the first CONNACK, the failed attempt was the first try, not a retry:
                # the first retry then waits initial_delay, as after a lost connection.
                retries = attempt if started else attempt - 1
                if not await self._after_failure(exc, retries):
                    attempt = 0
                continue
            attempt = 0
            if not started:
                started = True
                task_status.started()
            error = await self._run_connection(stream)
            if error is not None:
                logger.info("connection lost: %s", error)
                if policy is not None:
                    self._events.put(Disconnected(error))
                if not await self._after_failure(error, 0):
                    attempt = 0
        self._finish()

    async def _after_failure(self, error: MqttError, attempt: int) -> bool:
        """Wait before the next attempt.

        With a reconnect policy that is not exhausted, sleep its backoff delay and return True.
        Otherwise hand the error to the application and wait until it asks for a reconnect
        (``poll()`` again, or :meth:`reconnect`); return False, which resets the attempt count.
        """
        policy = self.options.reconnect
        if policy is not None and not _exhausted(policy.max_attempts, attempt):
            delay = policy.delay(attempt)
            self._events.put(Reconnecting(attempt + 1, delay))
            with trio.move_on_after(delay):
                while self._end is None:
                    await self._session_wakeup.wait()
            return True
        self._awaiting_reconnect = True
        self._report_failure(error)
        while self._end is None and self._awaiting_reconnect:
            await self._session_wakeup.wait()
        return False

    async def _establish(self) -> trio.abc.Stream:
        """Open the transport and complete CONNECT/CONNACK within the connect timeout."""
        options = self.options
        state = self._state
        stream: trio.abc.Stream | None = None
        with trio.move_on_after(options.connect_timeout) as scope:
            stream = await options.transport.open_stream(
                options.host, options.port, max_packet_size=options.max_incoming_packet_size
            )
            try:
                with _translate_io_errors("connecting failed"):
                    state.connect(trio.current_time())
                    self._collect()
                    await self._send(stream, state.data_to_send())
                    while state.state is ConnectionState.CONNECTING:
                        data = await stream.receive_some(RECEIVE_SIZE)
                        if not data:
                            raise ConnectionLost("the broker closed the connection before CONNACK")
                        self._bytes_received += len(data)
                        try:
                            state.receive_data(data, trio.current_time())
                        finally:
                            self._collect()
                        await self._send(stream, state.data_to_send())
            except BaseException:
                state.connection_lost(trio.current_time())
                await trio.aclose_forcefully(stream)
                raise
        if scope.cancelled_caught:
            if stream is not None:
                state.connection_lost(trio.current_time())
                await trio.aclose_forcefully(stream)
            raise ConnectTimeout(
                f"no CONNACK from {options.host}:{options.port} within "
                f"{options.connect_timeout:g} s"
            )
        assert stream is not None
        self._connects += 1
        self._update_publish_limits()
        logger.info("connected to %s:%d", options.host, options.port)
        self._window_wakeup.set()
        return stream

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> None:
        if data:
            if self._store is not None and self._store.pending:
                self._route(await self._store.flush())
            await stream.send_all(data)
            self._bytes_sent += len(data)

    async def _run_connection(self, stream: trio.abc.Stream) -> MqttError | None:
        """Run reader, writer and keepalive on one stream; return the error that ended it."""
        error: MqttError | None = None
        self._fatal = None
        try:
            async with trio.open_nursery() as nursery:
                self._io_scope = nursery.cancel_scope
                nursery.start_soon(self._reader, stream)
                nursery.start_soon(self._writer, stream)
                nursery.start_soon(self._keepalive)
        except BaseExceptionGroup as group:
            error = _first_mqtt_error(group)
            if error is None:
                raise
        except MqttError as exc:  # pragma: no cover - strict groups always wrap
            error = exc
        finally:
            self._io_scope = None
            if self._state.state is not ConnectionState.DISCONNECTED:
                self._state.connection_lost(trio.current_time())
            self._collect()
            if self._store is not None:
                self._route(self._store.release_all())
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        if self._end is not None:
            return None
        return error

    async def _reader(self, stream: trio.abc.Stream) -> None:
        state = self._state
        while True:
            with _translate_io_errors("receiving failed"):
                data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ConnectionLost("the broker closed the connection")
            self._bytes_received += len(data)
            error: MqttError | None = None
            try:
                state.receive_data(data, trio.current_time())
            except MqttError as exc:
                error = exc
            self._collect()
            self._writer_wakeup.set()
            self._window_wakeup.set()
            if error is not None:
                if isinstance(error, RemoteProtocolError):
                    # let the writer flush the DISCONNECT the state machine queued
                    self._fatal = error
                    with trio.move_on_after(FATAL_FLUSH_TIMEOUT):
                        await trio.sleep_forever()
                raise error
            if self._needs_pause():
                await self._pause_reading()

    async def _pause_reading(self) -> None:
        state = self._state
        state.set_reader_paused(True, trio.current_time())
        self._deadline_wakeup.set()
        try:
            while self._needs_pause():
                await self._space.wait()
        finally:
            state.set_reader_paused(False, trio.current_time())
            self._deadline_wakeup.set()

    async def _writer(self, stream: trio.abc.Stream) -> None:
        """Send what the state machine queued, coalescing packets into few ``send_all`` calls.

        The writer is either *streaming* or *idle*. After each send it watches
        ``IDLE_ROUNDS`` scheduling rounds: if more packets arrive (a publisher in a loop, acks
        for a flow of messages) it is streaming, and then lets rounds pass while packets keep
        coming, up to ``COALESCE_BYTES`` or ``COALESCE_ROUNDS``, before the next send. This cuts
        system calls (and the broker's wakeups) by an order of magnitude under load. If nothing
        arrives it is idle, and the next packet goes out at once: a lone request or reply never
        waits for packets that are not coming.
        """
        state = self._state
        pending: list[bytes] = []
        size = 0
        rounds = 0
        last_data_round = 0
        streaming = False
        while True:
            data = state.data_to_send()
            if data:
                pending.append(data)
                size += len(data)
                self._unflushed = 0
                self._flushed.set()
                if rounds - last_data_round <= IDLE_ROUNDS:
                    streaming = True
                last_data_round = rounds
            if (
                pending
                and streaming
                and size < COALESCE_BYTES
                and rounds < COALESCE_ROUNDS
                and rounds - last_data_round < IDLE_ROUNDS
            ):
                rounds += 1
                await trio.lowlevel.checkpoint()
                continue
            if pending:
                blob = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                size = 0
                if self._store is not None and self._store.pending:
                    # what these bytes describe is durable before the broker can see it
                    self._route(await self._store.flush())
                with _translate_io_errors("sending failed"):
                    await stream.send_all(blob)
                self._bytes_sent += len(blob)
                # watch the next rounds: do packets keep coming?
                rounds = last_data_round = 0
                streaming = False
                continue
            if self._fatal is not None:
                raise self._fatal
            if self._end is not None:
                if state.state is ConnectionState.CLOSED:
                    # DISCONNECT is written; give the broker a moment to read it (and our last
                    # acks) before the socket goes. Closing at once can let a reconnect with
                    # the same client id take the session over first, and then the broker
                    # publishes the will although we said goodbye. The reader ends this wait
                    # as soon as the broker closes its side.
                    await trio.sleep(DISCONNECT_LINGER)
                assert self._io_scope is not None
                self._io_scope.cancel()
                return
            if rounds - last_data_round < IDLE_ROUNDS:
                rounds += 1
                await trio.lowlevel.checkpoint()
                continue
            await self._writer_wakeup.wait()
            rounds = IDLE_ROUNDS + 1  # woken after a quiet spell: not streaming
            last_data_round = 0

    async def _keepalive(self) -> None:
        state = self._state
        while True:
            deadline = state.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._deadline_wakeup.wait()
                continue
            state.handle_timeout(trio.current_time())
            self._collect()
            self._writer_wakeup.set()

    def _finish(self) -> None:
        """The session ended for good: wake everybody who waits on it."""
        end = self._end or ConnectionClosed("the connection was closed")
        self._end = end
        self._events.close(end)
        for route in self._route_list:
            route.close(end)
        for tracker in list(self._trackers):
            tracker._fail(end)
        self._trackers.clear()
        if self._end_tracker is not None:
            self._end_tracker._resolve(None)
        self._finished.set()

    async def _close_gracefully(self, grace_period: float) -> None:
        """Leaving the ``async with`` block: finish inflight work, DISCONNECT, close."""
        with trio.move_on_after(grace_period) as scope:
            scope.shield = True
            if self._end is None and self._state.state is ConnectionState.CONNECTED:
                await self._wait_idle()
            self._close_locally(None)
            await self._finished.wait()


def _exhausted(max_attempts: int | None, attempt: int) -> bool:
    return max_attempts is not None and attempt >= max_attempts


def group_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(group_leaves(exc))
        else:
            found.append(exc)
    return found


def _first_mqtt_error(group: BaseExceptionGroup[BaseException]) -> MqttError | None:
    leaves = group_leaves(group)
    if any(not isinstance(exc, MqttError | trio.Cancelled) for exc in leaves):
        return None
    for exc in leaves:
        if isinstance(exc, MqttError):
            return exc
    return None
