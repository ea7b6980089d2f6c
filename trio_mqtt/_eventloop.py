"""The event loop: the tasks that run one MQTT session over Trio, and its lifecycle.

Theory of operation. One :class:`~trio_mqtt.sansio.ClientState` holds all protocol state. Tasks
in the connection's nursery call into it synchronously (so no task switch happens halfway
through a state update) and then hand the events it produced to the router (``_routing.py``):

* the *session* task connects, runs one network connection at a time, and reconnects;
* per network connection, a *reader* feeds received bytes in, the *writer* (``_writer.py``)
  sends whatever the state machine queued, and a *keepalive* task sleeps until the deadline
  the state machine computes;
* the *intake* task takes control requests (subscribe, unsubscribe, disconnect, ...) from the
  client channel. Publishes do not pass through a task: :class:`~trio_mqtt._admission.Admission`
  lets them into the state machine in the caller's task.

The loop owns the connection's *phase*, and with it what every request gets:

========== =========================================================== ===================
phase      when                                                        a new request
========== =========================================================== ===================
CONNECTING connecting, or waiting out a reconnect policy's backoff      is accepted
CONNECTED  CONNACK received                                            is accepted
FAILED     the error was handed to the application (no policy, or the  see below
           policy gave up); ``poll()`` or ``reconnect()`` leaves it
ENDED      closed locally, every handle closed, or the block left      raises the end error
========== =========================================================== ===================

In FAILED, a request that waits for the broker's answer (subscribe, unsubscribe, a tracked
publish, re-authentication) or for room only a connection can make (a publish into a full
window) raises the connection error at once: nothing would answer it. A plain publish with room
is kept in the session and goes out after the reconnect, as do acks; disconnecting ends it.

Entering FAILED or ENDED answers everybody who waits: trackers fail with the error (unanswered
SUBSCRIBE/UNSUBSCRIBE requests are dropped from the session, publishes stay in it and are sent
again after a reconnect), parked publishers are woken, and on ENDED the request channel is
closed, so a request made later raises at once instead of hanging.
"""

from __future__ import annotations

import enum
import logging
import math
import sys
from typing import Any

import trio

from ._admission import Admission
from ._attempts import AttemptPlanner
from ._client import Client
from ._core._errors import (
    BeforeConnectError,
    ConnectionClosed,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    InvalidOptionError,
    MqttError,
    ProtocolError,
    RemoteProtocolError,
    RequestsDone,
)
from ._core._events import Disconnected, Reconnecting
from ._core._packets import ConnAck, Publish
from ._core._state import ClientState, ConnectionState
from ._dispatch import Overflow, Route, Signal
from ._options import MqttOptions
from ._packet_log import log_packets, packet_logger
from ._requests import (
    AckRequest,
    DisconnectRequest,
    ReauthRequest,
    Request,
    SubscribeRequest,
    Tracker,
    UnsubscribeRequest,
    resolve_tracker,
)
from ._routing import EventRouter
from ._statistics import ConnectionStatistics
from ._store import StoreBinding
from ._writer import Writer, translate_io_errors

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["EventLoop", "Phase", "group_leaves"]

logger = logging.getLogger("trio_mqtt")

#: bytes asked of the transport per read; 256 KiB reads cut the scheduling passes per large
#: message (16 KiB QoS 0: 21k -> 24k msg/s) and cost nothing measurable for small ones
RECEIVE_SIZE = 262144
FATAL_FLUSH_TIMEOUT = 1.0
#: seconds the reader may be held back by unread messages before a warning is logged
SLOW_CONSUMER_WARNING = 1.0


class Phase(enum.Enum):
    """Where the session stands, as far as requests are concerned (see the module doc)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    ENDED = "ended"


class EventLoop:
    """Owns the state machine, the buffers and the tasks of one session (see the module doc).

    The Trio layer above talks to it through :meth:`run`, :meth:`close`, :meth:`finish`,
    :meth:`open_route`/:meth:`close_route`, :meth:`request_reconnect`, the event methods and
    :meth:`statistics`.
    """

    def __init__(
        self, options: MqttOptions, *, event_capacity: int = 1000, drop_unread: bool = False
    ) -> None:
        if event_capacity < 1:
            raise InvalidOptionError("event_capacity must be at least 1")
        self.options = options
        state = self._state = ClientState(options.session_config())
        store = options.session_store
        #: the session store's hooks (None without a store: nothing on the hot path)
        self._store = (
            None
            if store is None
            else StoreBinding(
                store, options.client_id, options.clean_start, on_change=self._store_changed
            )
        )
        self._router = EventRouter(event_capacity, drop_unread=drop_unread)
        self._writer = Writer(
            state, self._router.deliver, self._store, self._room_changed, self._collect
        )
        self._admission = Admission(
            state,
            self._store,
            self._router,
            self._writer,
            self._collect,
        )
        control_send, self._control_recv = trio.open_memory_channel[Request](
            options.request_capacity
        )
        #: the first client handle
        self.client = Client(self._admission, control_send)
        self._phase = Phase.CONNECTING
        self._failure: MqttError | None = None
        self._end: MqttError | None = None
        self._end_tracker: Tracker[None] | None = None
        self._reauth_tracker: Tracker[None] | None = None
        self._finished = trio.Event()
        self._window_wakeup = Signal()
        self._deadline_wakeup = Signal()
        #: wakes the throttle task to look at the rate limit again (None: no throttle)
        self._throttle_wakeup = None if options.throttle is None else Signal()
        self._session_wakeup = Signal()
        self._nursery: trio.Nursery | None = None
        self._connects = 0
        self._bytes_received = 0
        self._attempts = AttemptPlanner(options)
        #: cancels a running before_connect hook when the session ends
        self._attempt_scope: trio.CancelScope | None = None

    # ================================================================= the interface
    async def run(self, nursery: trio.Nursery) -> None:
        """Start the session in ``nursery``; returns after the first CONNACK (or raises)."""
        self._nursery = nursery
        await nursery.start(self._session)
        nursery.start_soon(self._control_intake)

    @property
    def connected(self) -> bool:
        """True while a network connection is up and CONNACK was received."""
        return self._state.state is ConnectionState.CONNECTED

    @property
    def connack(self) -> ConnAck | None:
        """The CONNACK of the current (or last) connection."""
        return self._state.connack

    @property
    def phase(self) -> Phase:
        """Where the session stands (see :class:`Phase`)."""
        return self._phase

    @property
    def end(self) -> MqttError | None:
        """The error that ended the session, or None while it runs."""
        return self._end

    def request_reconnect(self) -> None:
        """Leave the FAILED phase: the session task tries to connect again."""
        if self._phase is Phase.FAILED:
            self._phase = Phase.CONNECTING
            self._failure = None
            self._admission.set_failed(None)
            self._session_wakeup.set()

    async def next_event(self) -> object:
        """The next event (or :class:`~trio_mqtt._dispatch.Failure`), waiting for one."""
        self._collect_pending()
        return await self._router.events.get()

    async def wait_for_message(self) -> None:
        """Wait until an incoming message (or a connection error, or the end) is buffered."""
        self._collect_pending()
        await self._router.events.wait_for_message()

    def next_event_nowait(self) -> object:
        """The next buffered event; :class:`trio.WouldBlock` when none."""
        self._collect_pending()
        return self._router.events.get_nowait()

    def take_messages(self, out: list[Publish], limit: int) -> None:
        """Move up to ``limit`` buffered incoming messages to ``out`` without waiting."""
        self._collect_pending()
        self._router.events.take_messages(out, limit)

    def open_route(self, topic_filter: str, capacity: int, overflow: Overflow) -> Route:
        """A new route; already closed when the session has ended."""
        return self._router.open_route(topic_filter, capacity, overflow, self._end)

    def close_route(self, route: Route) -> bool:
        """Remove a route; True when another open route still uses its filter."""
        return self._router.close_route(route)

    def statistics(self) -> ConnectionStatistics:
        """A snapshot of the counters."""
        state = self._state
        counters = state.statistics
        events = self._router.events
        return ConnectionStatistics(
            connected=self.connected,
            window=state.window,
            inflight=state.inflight_count,
            waiting_publishes=state.waiting_count,
            queued_requests=self._control_recv.statistics().current_buffer_used
            + self._admission.parked,
            buffered_events=len(events.items),
            dropped_events=events.dropped,
            connects=self._connects,
            packets_sent=counters.packets_sent,
            packets_received=counters.packets_received,
            publishes_sent=counters.publishes_sent,
            publishes_received=counters.publishes_received,
            retransmissions=counters.retransmissions,
            duplicates_suppressed=counters.duplicates_suppressed,
            pings_sent=counters.pings_sent,
            sessions_lost=counters.sessions_lost,
            stray_acks=counters.stray_acks,
            bytes_sent=self._writer.bytes_sent,
            bytes_received=self._bytes_received,
            held_acks=state.held_ack_count,
            throttled_time=state.throttled_time,
            publishes_expired=counters.publishes_expired,
            publishes_dropped_oldest=counters.publishes_dropped_oldest,
        )

    async def close(self, grace_period: float) -> None:
        """Leaving the ``async with`` block: finish inflight work, DISCONNECT, close."""
        with trio.move_on_after(grace_period) as scope:
            scope.shield = True
            if self._end is None and self._phase is Phase.CONNECTED:
                await self._wait_idle()
            self._close_locally(None)
            await self._finished.wait()

    def finish(self) -> None:
        """The session ended for good: answer everybody who waits on it (idempotent)."""
        if self._phase is Phase.ENDED:
            return
        end = self._end or ConnectionClosed("the connection was closed")
        self._end = end
        self._phase = Phase.ENDED
        self._router.close(end)
        self._refuse_queued_requests(end)
        self._admission.set_ended(end)
        if self._end_tracker is not None:
            resolve_tracker(self._end_tracker, None)
        self._report_unfinished()
        self._finished.set()

    def _report_unfinished(self) -> None:
        """Say what the ending session leaves undone: nothing admitted vanishes silently."""
        state = self._state
        unsent = state.waiting_count
        unacked = state.inflight_count
        if unsent:
            kept = "QoS 1/2 ones are kept by the session store" if self._store else "lost"
            logger.warning(
                "the session ended with %d admitted publishes never sent (the window or the "
                "connection had no room for them; %s)",
                unsent,
                kept,
            )
        if unacked:
            kept = "kept by the session store" if self._store is not None else "lost"
            logger.warning(
                "the session ended with %d QoS 1/2 publishes sent but not acknowledged (%s)",
                unacked,
                kept,
            )

    # ================================================================= phases
    def _enter_failed(self, error: MqttError) -> None:
        """Hand ``error`` to the application and answer every waiting request with it."""
        self._phase = Phase.FAILED
        self._failure = error
        self._router.report_failure(error)
        # the callers hear the error: their SUBSCRIBE/UNSUBSCRIBE must not go out later
        self._state.abandon_requests()
        self._router.fail_trackers(error)
        self._admission.set_failed(error)

    def _end_session(self, end: MqttError) -> None:
        """Refuse new requests from now on; the writer flushes and the session task ends."""
        self._end = end
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()
        self._writer.close_after_flush()
        self._session_wakeup.set()
        self._window_wakeup.set()
        self._admission.set_ended(end)

    def _refuse_queued_requests(self, end: MqttError) -> None:
        receive = self._control_recv
        while True:
            try:
                request = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if request.tracker is not None:
                self._router.fail(request.tracker, end)
            else:
                logger.warning("%s was not carried out: %s", type(request).__name__, end)
        receive.close()

    # ================================================================= events
    def _collect(self) -> None:
        """Hand the state machine's new events to the router."""
        if self._throttle_wakeup is not None:
            self._throttle_wakeup.set()  # a publish may have been held by the rate limit
        events = self._state.take_events()
        if not events:
            if self._store is not None:
                self._store.record(events)  # a publish may have been queued without an event
            return
        if packet_logger.isEnabledFor(logging.DEBUG):
            log_packets(events)
        if self._store is not None:
            # the store holds events back while an incoming QoS 2 id is not yet durable
            events = self._store.record(events)
        self._router.deliver(events)

    def _collect_pending(self) -> None:
        """Collect what admission left for the writer, so a reader sees every event so far.

        A publish that went straight to the wire leaves its Outgoing event in the state
        machine until the writer takes the bytes; whoever reads events first collects it.
        """
        if self._state.has_events():
            self._collect()

    def _store_changed(self) -> None:
        """A commit let queued publishes out (or refused them): collect and send."""
        self._collect()
        self._writer.wake()
        self._room_changed()

    def _room_changed(self) -> None:
        self._window_wakeup.set()
        self._admission.room_changed()

    # ================================================================= requests
    async def _control_intake(self) -> None:
        try:
            async for request in self._control_recv:
                self._apply_control(request)
                self._collect()
                self._writer.wake()
        except trio.ClosedResourceError:
            return  # finish() closed the channel: the session is over
        if self._end is None:
            logger.debug("every client handle is closed: finishing with RequestsDone")
            self._end_session(RequestsDone("every client handle was closed"))

    def _apply_control(self, request: Request) -> None:
        tracker: Tracker[Any] | None = request.tracker
        if self._phase is Phase.ENDED:
            # taken from the channel just before finish() closed it
            assert self._end is not None
            self._refuse(request, self._end)
            return
        if self._phase is Phase.FAILED and isinstance(
            request, SubscribeRequest | UnsubscribeRequest | ReauthRequest
        ):
            # nothing would answer it (see the module doc); taken before the failure
            assert self._failure is not None
            self._refuse(request, self._failure)
            return
        state = self._state
        now = trio.current_time()
        try:
            if isinstance(request, SubscribeRequest):
                if tracker is not None:
                    self._router.track(tracker)
                state.subscribe(request.subscriptions, request.properties, tag=tracker, now=now)
            elif isinstance(request, UnsubscribeRequest):
                if tracker is not None:
                    self._router.track(tracker)
                state.unsubscribe(request.topic_filters, request.properties, tag=tracker, now=now)
            elif isinstance(request, AckRequest):
                state.ack(request.packet_id, request.reason_code, request.properties, now=now)
                if tracker is not None:
                    resolve_tracker(tracker, None)
            elif isinstance(request, DisconnectRequest):
                if request.grace_period > 0 and self._nursery is not None:
                    self._nursery.start_soon(self._disconnect_after_grace, request)
                else:
                    self._close_locally(request)
            elif isinstance(request, ReauthRequest):
                if tracker is not None:
                    self._router.track(tracker)
                    self._reauth_tracker = tracker
                state.reauthenticate(now, tag=tracker)
        except MqttError as exc:
            self._refuse(request, exc)

    def _refuse(self, request: Request, error: MqttError) -> None:
        if request.tracker is not None:
            self._router.fail(request.tracker, error)
        else:
            logger.warning("%s refused: %s", type(request).__name__, error)

    async def _disconnect_after_grace(self, request: DisconnectRequest) -> None:
        with trio.move_on_after(request.grace_period):
            await self._wait_idle()
        self._close_locally(request)

    async def _wait_idle(self) -> None:
        # Our own flows only: incoming messages the application has not acked (manual acks)
        # are its business, and waiting for them would only delay leaving. A failed
        # connection makes no progress, so there is nothing to wait for.
        state = self._state
        while (state.inflight_count or state.waiting_count or self._admission.parked) and (
            self._end is None and self._phase is not Phase.FAILED
        ):
            await self._window_wakeup.wait()

    def _close_locally(self, request: DisconnectRequest | None) -> None:
        """Queue DISCONNECT (when connected) and end the session after the writer flushed it."""
        tracker = request.tracker if request is not None else None
        if self._end is not None:
            if tracker is not None:
                resolve_tracker(tracker, None)
            return
        state = self._state
        if state.state is ConnectionState.CONNECTED:
            try:
                if request is not None:
                    state.disconnect(trio.current_time(), request.reason_code, request.properties)
                else:
                    state.disconnect(trio.current_time())
            except MqttError as exc:  # checked in the caller's task; only a race gets here
                assert request is not None
                self._refuse(request, exc)
                return
            self._collect()
        self._end_tracker = tracker
        self._end_session(ConnectionClosed("the connection was closed by the client"))

    # ================================================================= session
    async def _session(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session; with a session store, load it first and save it at the end."""
        store = self._store
        if store is None:
            await self._run_session(task_status)
            return
        committer: trio.CancelScope | None = None
        try:
            await store.start(self._state)
            assert self._nursery is not None
            # queued publishes are committed even while no connection is up
            committer = await self._nursery.start(self._commit_queued, store)
            await self._run_session(task_status)
        finally:
            if committer is not None:
                committer.cancel()
            with trio.CancelScope(shield=True):
                await store.finish()

    async def _commit_queued(
        self, store: StoreBinding, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await store.commit_forever(self._router.deliver)

    async def _run_session(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, run, reconnect; ends when the session ends locally."""
        policy = self.options.reconnect
        attempt = 0
        started = False
        while self._end is None:
            try:
                if not await self._prepare_attempt():
                    break
                stream = await self._establish()
            except (ConnectionLost, ConnectionRefused, ProtocolError, BeforeConnectError) as exc:
                if self._attempts.redirect(exc, self.options):
                    logger.info("redirected by the broker: %s", exc)
                    continue
                if not isinstance(exc, BeforeConnectError) and self._attempts.attempt_failed():
                    logger.info("connecting failed (%s): trying the next server", exc)
                    continue
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
            self._attempts.connected()
            if self._end is None:
                self._phase = Phase.CONNECTED
                self._room_changed()
            if not started:
                started = True
                task_status.started()
            error = await self._run_connection(stream)
            if error is not None:
                logger.info("connection lost: %s", error)
                if self._end is None:
                    self._phase = Phase.CONNECTING
                if policy is not None:
                    self._router.events.put(Disconnected(error))
                if self._attempts.redirect(error, self.options):
                    logger.info("redirected by the broker: %s", error)
                    continue
                if not await self._after_failure(error, 0):
                    attempt = 0
        self.finish()

    async def _after_failure(self, error: MqttError, attempt: int) -> bool:
        """Wait before the next attempt.

        With a reconnect policy that is not exhausted, sleep its backoff delay and return True.
        Otherwise hand the error to the application and wait until it asks for a reconnect
        (``poll()`` again, or ``reconnect()``); return False, which resets the attempt count.
        """
        if self._end is not None:
            return True
        policy = self.options.reconnect
        if policy is not None and not _exhausted(policy.max_attempts, attempt):
            delay = policy.delay(attempt)
            logger.info("reconnecting in %.2f s (attempt %d) after: %s", delay, attempt + 1, error)
            self._router.events.put(Reconnecting(attempt + 1, delay, error))
            with trio.move_on_after(delay):
                while self._end is None:
                    await self._session_wakeup.wait()
            return True
        logger.info("connection failed and nothing reconnects it until asked: %s", error)
        self._enter_failed(error)
        while self._end is None and self._phase is Phase.FAILED:
            await self._session_wakeup.wait()
        return False

    async def _prepare_attempt(self) -> bool:
        """Take the options of the coming attempt (server list, before_connect hook).

        Returns False when the session ended while the hook ran.
        """
        with trio.CancelScope() as scope:
            self._attempt_scope = scope
            try:
                self.options = await self._attempts.prepare(self.options, self._state)
            finally:
                self._attempt_scope = None
        return not scope.cancelled_caught and self._end is None

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
                with translate_io_errors("connecting failed"):
                    state.connect(trio.current_time())
                    self._collect()
                    await self._writer.send(stream, state.data_to_send())
                    while state.state is ConnectionState.CONNECTING:
                        data = await stream.receive_some(RECEIVE_SIZE)
                        if not data:
                            raise ConnectionLost("the broker closed the connection before CONNACK")
                        self._bytes_received += len(data)
                        try:
                            state.receive_data(data, trio.current_time())
                        finally:
                            self._collect()
                        await self._writer.send(stream, state.data_to_send())
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
        connack = state.connack
        logger.info(
            "connected to %s:%d (session present: %s)",
            options.host,
            options.port,
            "yes" if connack is not None and connack.session_present else "no",
        )
        return stream

    async def _run_connection(self, stream: trio.abc.Stream) -> MqttError | None:
        """Run reader, writer and keepalive on one stream; return the error that ended it."""
        error: MqttError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, stream)
                nursery.start_soon(self._write, stream, nursery.cancel_scope)
                nursery.start_soon(self._keepalive)
                if self._throttle_wakeup is not None:
                    nursery.start_soon(self._release_throttled, self._throttle_wakeup)
        except BaseExceptionGroup as group:
            error = _first_mqtt_error(group)
            if error is None:
                raise
        except MqttError as exc:  # pragma: no cover - strict groups always wrap
            error = exc
        finally:
            if self._state.state is not ConnectionState.DISCONNECTED:
                self._state.connection_lost(trio.current_time())
            self._collect()
            if self._store is not None:
                self._router.deliver(self._store.release_all())
            self._abandon_reauthentication(error)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        if self._end is not None:
            return None
        return error

    def _abandon_reauthentication(self, error: MqttError | None) -> None:
        tracker = self._reauth_tracker
        if tracker is not None and not tracker.done:
            reason = error or ConnectionClosed("the connection was closed")
            self._router.fail(
                tracker, ConnectionLost(f"the connection ended during re-authentication: {reason}")
            )
        self._reauth_tracker = None

    async def _write(self, stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
        await self._writer.run(stream)
        scope.cancel()  # the session was closed locally: the connection is done

    async def _reader(self, stream: trio.abc.Stream) -> None:
        state = self._state
        router = self._router
        writer = self._writer
        while True:
            with translate_io_errors("receiving failed"):
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
            if state.has_data_to_send():
                writer.wake()
            self._room_changed()
            if error is not None:
                if isinstance(error, RemoteProtocolError):
                    # let the writer flush the DISCONNECT the state machine queued
                    writer.fail_after_flush(error)
                    with trio.move_on_after(FATAL_FLUSH_TIMEOUT):
                        await trio.sleep_forever()
                raise error
            if router.needs_pause():
                await self._pause_reading()

    async def _pause_reading(self) -> None:
        state = self._state
        router = self._router
        state.set_reader_paused(True, trio.current_time())
        self._deadline_wakeup.set()
        try:
            with trio.move_on_after(SLOW_CONSUMER_WARNING):
                while router.needs_pause():
                    await router.space.wait()
            if router.needs_pause():
                logger.warning(
                    "reading from the broker has been paused for over %g s: %s",
                    SLOW_CONSUMER_WARNING,
                    router.pause_reason(),
                )
                while router.needs_pause():
                    await router.space.wait()
        finally:
            state.set_reader_paused(False, trio.current_time())
            self._deadline_wakeup.set()

    async def _release_throttled(self, wakeup: Signal) -> None:
        """Send publishes held by the rate limit when the core says they may go."""
        state = self._state
        while True:
            deadline = state.throttle_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await wakeup.wait()
                continue
            state.release_throttled(trio.current_time())
            self._collect()
            self._writer.wake()
            self._room_changed()

    async def _keepalive(self) -> None:
        state = self._state
        while True:
            deadline = state.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._deadline_wakeup.wait()
                continue
            state.handle_timeout(trio.current_time())
            self._collect()
            self._writer.wake()


def _exhausted(max_attempts: int | None, attempt: int) -> bool:
    return max_attempts is not None and attempt >= max_attempts


def group_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception in ``group`` and its nested groups, depth first."""
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
