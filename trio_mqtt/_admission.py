"""Admission: how a request from a client handle enters the session, or is refused at once.

Theory of operation. The event loop owns one :class:`Admission`; every :class:`~trio_mqtt.Client`
handle holds it. Each request is first checked in the caller's task, against the connection's
phase (:meth:`Admission.check_open`: a session that ended, or a failed connection nobody has
reconnected yet, refuses with a typed error instead of accepting something it cannot send) and
against the state machine's own rules (``ClientState.check_publish`` and friends: one rule, one
place), so a bad request raises at its call site.

Publishes then enter the state machine directly in the caller's task: the call is synchronous,
so this is as safe as a task of the loop doing it, and it costs no channel hop. Admission is
bounded: at most ``max_queued`` publishes wait to be sent (the state machine's
``make_room`` applies the ``queue_full`` policy there: wait, refuse, or drop the oldest), and
at most ``MAX_UNFLUSHED`` wait for the writer. Past that, publishers park in FIFO order (a
newcomer queues behind parked ones, so order is kept) until :meth:`room_changed` lets them in,
or until the phase refuses them. A cancelled publisher was not admitted; an admitted one is
not cancelled (Trio's channel rule). With a durable session store, an admitted QoS 1/2
publish then waits, shielded, for the commit that makes it durable
(``StoreBinding.wait_committed``), and a failed commit raises here.

Control requests (subscribe, acks, disconnect, ...) go through a memory channel to the loop's
intake task, which always takes them, so an ack never waits behind a full publish window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from ._core._errors import MqttError
from ._core._packets import NO_PROPERTIES, Properties
from ._core._state import ClientState
from ._requests import PublishRequest
from ._routing import EventRouter
from ._store import StoreBinding
from ._writer import Writer

__all__ = ["Admission"]

logger = logging.getLogger("trio_mqtt")

#: seconds a publisher may wait for window room before a warning says why
FULL_WINDOW_WARNING = 1.0


class Admission:
    """Checks and admits requests for one session (see the module doc).

    Args:
        state: the session state machine.
        store: the session store's hooks (durable stores make publishers wait for the
            commit), or None.
        router: resolves and fails trackers.
        writer: counts unwritten publishes and is woken for new output.
        collect: routes the state machine's new events (called after each admission).

    The event loop tells it the connection's phase: :meth:`set_failed` while a failed
    connection waits for the application, :meth:`set_ended` once the session is over.
    """

    def __init__(
        self,
        state: ClientState,
        store: StoreBinding | None,
        router: EventRouter,
        writer: Writer,
        collect: Callable[[], None],
    ) -> None:
        self._state = state
        self._store = store
        self._router = router
        self._writer = writer
        self._collect = collect
        #: the error of a failed connection nobody has reconnected yet (see set_failed)
        self._failure: MqttError | None = None
        #: the error that ended the session (see set_ended)
        self._end: MqttError | None = None
        self._parked = trio.lowlevel.ParkingLot()
        self._wait_warning = _Warning(FULL_WINDOW_WARNING * 10)
        self._drop_warning = _Warning(FULL_WINDOW_WARNING * 10)
        self._drops_reported = 0

    # ------------------------------------------------------------------ the phase
    def set_failed(self, error: MqttError | None) -> None:
        """A failed connection waits for the application (``error``), or no longer (None)."""
        self._failure = error
        if error is not None:
            self._parked.unpark_all()  # to be refused

    def set_ended(self, end: MqttError) -> None:
        """The session is over: every request is refused with ``end`` from now on."""
        self._end = end
        self._parked.unpark_all()

    # ------------------------------------------------------------------ checks
    def check_open(self, *, waits_for_answer: bool = True) -> None:
        """Raise the typed error a new request gets in this phase of the connection.

        A request that waits for the broker's answer (``waits_for_answer``) is refused while a
        failed connection waits for the application to reconnect: nothing would answer it. A
        plain publish or an ack is only refused once the session has ended; before that it
        is kept in the session and goes out after the reconnect.
        """
        error = self._end
        if error is None and waits_for_answer:
            error = self._failure
        if error is not None:
            raise _fresh_copy(error) from error.__cause__

    def check_publish(self, request: PublishRequest) -> None:
        """Raise if the state machine would refuse this publish now."""
        if self._end is not None or (request.tracker is not None and self._failure is not None):
            self.check_open(waits_for_answer=request.tracker is not None)
        self._state.check_publish(
            request.topic, request.payload, request.qos, request.retain, request.properties
        )

    def check_disconnect(self, reason_code: int, properties: Properties | None) -> None:
        """Raise if a DISCONNECT with these arguments would be refused.

        A failed connection still takes it: disconnecting is how the application gives up.
        """
        self._state.check_disconnect(reason_code, properties or NO_PROPERTIES)

    def has_ended(self) -> bool:
        """True once the session has ended for good (closed, or every handle released)."""
        return self._end is not None

    def check_ack(self, packet_id: int, reason_code: int) -> None:
        """Raise if acknowledging ``packet_id`` would be refused."""
        self.check_open(waits_for_answer=False)
        self._state.check_ack(packet_id, reason_code)

    def check_reauthenticate(self) -> None:
        """Raise if a re-authentication cannot start now."""
        self.check_open()
        self._state.check_reauthenticate()

    # ------------------------------------------------------------------ publishes
    def _has_room(self) -> bool:
        return not self._state.queue_full() and self._writer.has_room

    def _make_room(self) -> bool:
        """True when a publish may be admitted now (the queue policy may drop the oldest)."""
        if not self._writer.has_room:
            return False
        state = self._state
        if not state.queue_full():
            return True
        try:
            return state.make_room(trio.current_time())
        finally:
            self._collect()  # what make_room dropped is reported
            self._note_drops()

    async def submit(self, request: PublishRequest) -> None:
        """Admit a publish, waiting (cancellably, in FIFO order) while admission is full.

        With a durable store, a QoS 1/2 publish then waits for its commit.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self.check_publish(request)
        if not self._parked and self._make_room():
            ticket = self._admit(request)
            if ticket:
                assert self._store is not None
                await self._store.wait_committed(ticket)
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return
        parked_at = trio.current_time()
        while True:
            # waiting for room that only a connection can make: refused while failed
            self.check_open()
            await self._parked.park()
            try:
                self.check_publish(request)
                admit = self._make_room()
            except BaseException:
                self.room_changed()  # the next in line may still be admitted
                raise
            if admit:
                ticket = self._admit(request)
                self.room_changed()  # room may remain for the next in line
                self._note_wait(trio.current_time() - parked_at)
                if ticket:
                    assert self._store is not None
                    await self._store.wait_committed(ticket)
                return

    def submit_nowait(self, request: PublishRequest) -> None:
        """Admit a publish now or raise :class:`trio.WouldBlock`.

        It does not wait for a durable store's commit (the commit follows at once; a publish
        whose commit fails is reported as :class:`~trio_mqtt.PublishDropped`).
        """
        self.check_publish(request)
        if self._parked or not self._make_room():
            raise trio.WouldBlock
        self._admit(request)

    def _note_drops(self) -> None:
        """Log publishes the ``drop_oldest`` policy dropped (at most every 10 s)."""
        dropped = self._state.statistics.publishes_dropped_oldest
        if dropped != self._drops_reported and self._drop_warning.log(
            "the queue of unsent publishes is full (max_queued): dropped %d of the oldest "
            "so far to admit newer ones (queue_full='drop_oldest')",
            dropped,
        ):
            self._drops_reported = dropped

    def _admit(self, request: PublishRequest) -> int:
        """Hand a publish to the state machine; return the commit ticket to wait for (0:
        none)."""
        tracker = request.tracker
        if tracker is not None:
            self._router.track(tracker)
        try:
            self._state.publish(
                request.topic,
                request.payload,
                request.qos,
                request.retain,
                request.properties,
                tag=tracker,
                now=trio.current_time(),
                checked=True,  # by check_publish, in this same step
            )
        except BaseException:
            if tracker is not None:
                self._router.untrack(tracker)
            raise
        if tracker is not None or self._store is not None or not self._state.has_data_to_send():
            self._collect()
        # else the publish went straight to the wire buffer and its only event, Outgoing, is
        # collected by the writer when it takes the bytes (one collection per batch, not per
        # publish: fast path QoS 0 about 5 % less CPU per message), or by an event read that
        # comes first (EventLoop collects pending events before reading the buffer)
        self._writer.admitted()
        store = self._store
        return 0 if store is None else store.ticket(request.qos)

    def _note_wait(self, waited: float) -> None:
        if waited >= FULL_WINDOW_WARNING:
            self._wait_warning.log(
                "a publish waited %.1f s for room: the outgoing window (%d QoS 1/2 messages "
                "in flight, %d waiting) stays full; the broker acknowledges slowly, or the "
                "link is down",
                waited,
                self._state.inflight_count,
                self._state.waiting_count,
            )

    def room_changed(self) -> None:
        """The window or the writer may have room again: let parked publishers in."""
        if self._parked and self._has_room():
            self._parked.unpark()

    @property
    def parked(self) -> int:
        """Publishers waiting for admission."""
        return len(self._parked)


class _Warning:
    """A warning logged at most once per ``interval`` seconds (a lasting condition would
    otherwise repeat it for every publish)."""

    __slots__ = ("_interval", "_last")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -math.inf

    def log(self, message: str, *args: object) -> bool:
        """Log ``message`` unless it was logged less than ``interval`` ago; True if logged."""
        now = trio.current_time()
        if now - self._last < self._interval:
            return False
        self._last = now
        logger.warning(message, *args)
        return True


def _fresh_copy(error: MqttError) -> MqttError:
    """The same error as a new object (same type, message and attributes, no traceback).

    Every refused caller gets its own: one exception object raised in several tasks would
    collect all their tracebacks. ``__init__`` is not called again, since error types take
    different arguments (a reason code, a message, ...).
    """
    fresh = type(error).__new__(type(error), *error.args)
    fresh.__dict__.update(error.__dict__)
    return fresh
