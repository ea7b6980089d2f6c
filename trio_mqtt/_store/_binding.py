"""Connects a session store to the event loop: restore, record, flush, final save.

Theory of operation
-------------------
The core's events already say how the session changes, so the store needs no hooks inside the
state machine:

========================================  ============================================
event                                     change
========================================  ============================================
``Outgoing(Publish)`` with QoS 1/2        SENT (the full publish, aliases undone)
``Outgoing(PubRel)``                      RELEASED (the flow awaits PUBCOMP)
``Incoming(PubAck)``                      DONE at stage 1
``Incoming(PubRec)`` with a failure code  DONE at stage 2 (no PUBREL follows)
``Incoming(PubComp)``                     DONE at stage 3
``Outgoing(PubRec)`` with success         HOLD_INCOMING (id kept until PUBREL)
``Outgoing(PubComp)``                     RELEASE_INCOMING
``SessionLost``                           CLEARED (what the core re-sends shows up as
                                          new SENT changes)
========================================  ============================================

The writer calls :meth:`StoreBinding.flush` before every ``send_all``, so the changes behind
the bytes about to leave are committed first, in one transaction per batch: a PUBLISH is on
disk before the broker can see it, an incoming QoS 2 id is held on disk before our PUBREC
leaves, and the id is released on disk before our PUBCOMP leaves.

An incoming QoS 2 message must not reach the application before its id is durable either:
killed in between, the process would have shown the message, the broker would not have our
PUBREC, and the restarted process would show its re-send again. So :meth:`record` holds back
a batch of events that holds an incoming id (and every later batch, to keep the order) until
a flush has committed it; the event loop routes what :meth:`flush` releases. When the
connection is lost first, :meth:`release_all` hands them over anyway: the session in memory
already counts them as delivered, and their ids reach the disk with the next flush.

Acknowledgements that need no answer (PUBACK, PUBCOMP) are committed with the next batch or
the final save; a crash before that re-sends the message (QoS 1, allowed) or a PUBREL the
broker answers harmlessly (QoS 2).

The outbox. With a durable store the core numbers its queue of unsent publishes and holds new
QoS 1/2 ones until they are committed (``_core/_queue.py``); :meth:`record` turns its queue
log into QUEUED and UNQUEUED changes. A publisher waits in :meth:`wait_committed` for the
flush that takes its QUEUED change (group commit: one transaction for every publish recorded
meanwhile). Flushes come from the writer before it sends and from :meth:`commit_forever`, a
task of the session that commits queued publishes even while no connection is up; one flush
runs at a time, in order. After a commit the core releases the queued publishes it covered
(the hook ``on_change`` lets the event loop collect what that sent); after a failed one it
takes them out again and reports them dropped, so a publish is either durable or refused.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from .._core._errors import MqttError, SessionStoreError
from .._core._events import Event, Incoming, Outgoing, SessionLost
from .._core._packets import NO_PROPERTIES, PubAck, PubComp, Publish, PubRec, PubRel
from .._core._queue import QUEUED
from .._core._session import SessionSnapshot
from .._core._state import ClientState
from ._base import STAGE_PUBREL, STAGE_QOS1, STAGE_QOS2, ChangeKind, SessionChange, SessionStore

__all__ = ["StoreBinding"]

logger = logging.getLogger("trio_mqtt")

_SENT = ChangeKind.SENT
_DONE = ChangeKind.DONE
_QUEUED = ChangeKind.QUEUED
_UNQUEUED = ChangeKind.UNQUEUED
#: failed flush generations remembered for the publishers that wait on them
_FAILURES_KEPT = 64
T = TypeVar("T")


async def _guarded(call: Awaitable[T]) -> T:
    """Await a store call; a failure of the store (not ours) becomes a
    :class:`SessionStoreError`."""
    try:
        return await call
    except MqttError:
        raise
    except Exception as exc:
        raise SessionStoreError(f"the session store failed: {exc!r}") from exc


class StoreBinding:
    """The event loop's side of a :class:`~trio_mqtt.SessionStore` (one per connection).

    Args:
        store: the store.
        client_id: the key of the session.
        clean_start: when True the stored session is discarded instead of restored (the broker
            discards its side too).
        on_change: called after a flush changed the core (released or aborted queued
            publishes), so that the event loop collects its events and wakes the writer.
    """

    def __init__(
        self,
        store: SessionStore,
        client_id: str,
        clean_start: bool,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.client_id = client_id
        self.clean_start = clean_start
        self._on_change = on_change
        self._durable = bool(store.durable)
        self._changes: list[SessionChange] = []
        # (flush that must have committed, events), held back in order until the incoming
        # QoS 2 ids they carry are durable; 0 = nothing of their own to wait for
        self._held: deque[tuple[int, list[Event]]] = deque()
        self._flushes_started = 0
        self._flushes_done = 0
        self._flushing = False
        self._flush_idle = trio.lowlevel.ParkingLot()  # flushes waiting for the running one
        self._committed = trio.lowlevel.ParkingLot()  # publishers in wait_committed
        self._failures: dict[int, SessionStoreError] = {}
        self._commit_wanted = trio.Event()
        self._state: ClientState | None = None
        self._opened = False

    @property
    def pending(self) -> bool:
        """True when changes wait for :meth:`flush`, or a flush is running."""
        return bool(self._changes) or self._flushing

    async def start(self, state: ClientState) -> None:
        """Open the store and load its session into ``state`` (before the first connect)."""
        snapshot = await _guarded(self.store.open(self.client_id))
        self._opened = True
        if self._durable:
            state.set_durable_queue(True)
        if self.clean_start:
            if snapshot.outgoing or snapshot.incoming or snapshot.queued:
                await _guarded(self.store.save(SessionSnapshot()))
        else:
            state.restore_session(snapshot, now=trio.current_time())
        # Only now may the final save overwrite the store with this state.
        self._state = state

    def record(self, events: list[Event]) -> list[Event]:
        """Turn the core's events into changes (see the module doc); cheap and synchronous.

        Returns the events the application may see now; the others are returned by a later
        :meth:`flush` (or :meth:`release_all`).
        """
        if not self._durable:
            return events
        changes = self._changes
        holds = False
        for event in events:
            if isinstance(event, Outgoing):
                packet = event.packet
                if isinstance(packet, Publish):
                    if packet.qos:
                        props = packet.properties
                        if props is not NO_PROPERTIES and props.topic_alias is not None:
                            # The event loop records right after each core call, so the flow
                            # is still there; if not, a DONE for it follows in this batch.
                            assert self._state is not None
                            packet = self._state.outgoing_publish(packet.packet_id) or packet
                        changes.append(SessionChange(_SENT, packet.packet_id, packet))
                elif isinstance(packet, PubRel):
                    changes.append(SessionChange(ChangeKind.RELEASED, packet.packet_id))
                elif isinstance(packet, PubRec):
                    if packet.reason_code < 0x80:
                        changes.append(SessionChange(ChangeKind.HOLD_INCOMING, packet.packet_id))
                        holds = True
                elif isinstance(packet, PubComp):
                    changes.append(SessionChange(ChangeKind.RELEASE_INCOMING, packet.packet_id))
            elif isinstance(event, Incoming):
                packet = event.packet
                if isinstance(packet, PubAck):
                    changes.append(SessionChange(_DONE, packet.packet_id, None, STAGE_QOS1))
                elif isinstance(packet, PubComp):
                    changes.append(SessionChange(_DONE, packet.packet_id, None, STAGE_PUBREL))
                elif isinstance(packet, PubRec) and packet.reason_code >= 0x80:
                    changes.append(SessionChange(_DONE, packet.packet_id, None, STAGE_QOS2))
            elif isinstance(event, SessionLost):
                # Every flow recorded so far is void (the queue is ours: it stays); the re-sent
                # publishes follow as QUEUED or SENT.
                changes[:] = [change for change in changes if change.kind >= _QUEUED]
                changes.append(SessionChange(ChangeKind.CLEARED, 0))
        log = self._state.take_queue_changes() if self._state is not None else None
        if log:
            # core time -> seconds since the epoch, so that expiry survives a restart
            offset = time.time() - trio.current_time()
            for kind, number, publish, at in log:
                if kind == QUEUED:
                    changes.append(SessionChange(_QUEUED, number, publish, 0, at + offset))
                    self._commit_wanted.set()
                else:
                    changes.append(SessionChange(_UNQUEUED, number))
        if not events:
            return events
        if holds or self._held:
            # the next flush to start takes the change that holds the id
            self._held.append((self._flushes_started + 1 if holds else 0, events))
            return []
        return events

    def release_all(self) -> list[Event]:
        """Every held-back event (the connection is gone: see the module doc)."""
        released = [event for _, events in self._held for event in events]
        self._held.clear()
        return released

    async def flush(self) -> list[Event]:
        """Commit the recorded changes (one batch) before the bytes they describe are sent.

        Waits for a flush already running first (one at a time, in order). Returns the
        held-back events this commit made safe to deliver, oldest first.

        Raises:
            SessionStoreError: the store failed (its exception is the cause). The connection
                ends without sending; queued publishes of the batch are taken out of the
                session (reported dropped; their publishers get the error), the rest of the
                batch is kept and retried first by the next flush, so the store never misses a
                change (every change is idempotent).
        """
        while self._flushing:
            await self._flush_idle.park()
        changes = self._changes
        self._flushes_started += 1
        generation = self._flushes_started
        if changes:
            self._changes = []
            self._flushing = True
            try:
                # shielded: a commit that went through must count as done
                with trio.CancelScope(shield=True):
                    await _guarded(self.store.apply(changes))
            except BaseException as exc:
                self._failed(generation, changes, exc)
                raise
            finally:
                self._flushing = False
                self._flush_idle.unpark_all()
            self._done(generation)
            self._release(changes)
        else:
            self._done(generation)
        # Events recorded while the commit ran may carry ids it did not cover: they wait
        # for the next flush, and so does everything after them.
        released: list[Event] = []
        held = self._held
        while held and held[0][0] <= generation:
            released += held.popleft()[1]
        return released

    def _done(self, generation: int) -> None:
        self._flushes_done = generation
        self._committed.unpark_all()

    def _release(self, changes: list[SessionChange]) -> None:
        """Let out the queued publishes this commit made durable."""
        numbers = [change.packet_id for change in changes if change.kind == _QUEUED]
        if numbers and self._state is not None:
            self._state.release_queued(max(numbers), trio.current_time())
            self._on_change()

    def _failed(self, generation: int, changes: list[SessionChange], exc: BaseException) -> None:
        """A commit failed: refuse its queued publishes, keep the rest for the next flush."""
        numbers = {change.packet_id for change in changes if change.kind == _QUEUED}
        aborted: set[int] = set()
        if numbers and self._state is not None:
            aborted = self._state.abort_queued(numbers)
        kept = [c for c in changes if not (c.kind == _QUEUED and c.packet_id in aborted)]
        self._changes[:0] = kept  # the next flush commits them (and counts)
        error = exc if isinstance(exc, SessionStoreError) else SessionStoreError(repr(exc))
        self._failures[generation] = error
        if len(self._failures) > _FAILURES_KEPT:
            del self._failures[min(self._failures)]
        self._done(generation)
        if aborted:
            self._on_change()

    def ticket(self, qos: int) -> int:
        """The flush a publish just recorded must wait for (0: it need not wait)."""
        return self._flushes_started + 1 if qos and self._durable else 0

    async def wait_committed(self, ticket: int) -> None:
        """Wait (not cancellably: the publish is admitted) until flush ``ticket`` has run.

        Raises:
            SessionStoreError: that flush failed; the publish was taken out of the session.
        """
        with trio.CancelScope(shield=True):
            while self._flushes_done < ticket:
                await self._committed.park()
        error = self._failures.get(ticket)
        if error is not None:
            raise SessionStoreError(*error.args) from error.__cause__

    async def commit_forever(self, deliver: Callable[[list[Event]], None]) -> None:
        """Commit queued publishes as they come, connected or not (a task of the session)."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted = trio.Event()
            try:
                deliver(await self.flush())
            except SessionStoreError as exc:
                logger.warning("committing queued publishes failed: %s", exc)

    async def finish(self) -> None:
        """Save the final session and release the store (the connection is over).

        Publishers still waiting for a commit are answered: the final save covers them.
        """
        if not self._opened:
            return
        self._opened = False
        try:
            if self._state is not None:
                while self._flushing:
                    await self._flush_idle.park()
                self._changes = []
                try:
                    now = trio.current_time()
                    await _guarded(self.store.save(self._state.export_session(now)))
                except SessionStoreError as exc:
                    self._failures[self._flushes_started + 1] = exc
                    raise
                finally:
                    self._done(sys.maxsize)
        finally:
            await _guarded(self.store.close())
