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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable
from typing import TypeVar

from .._core._errors import MqttError
from .._core._events import Event, Incoming, Outgoing, SessionLost
from .._core._packets import NO_PROPERTIES, PubAck, PubComp, Publish, PubRec, PubRel
from .._core._session import SessionSnapshot
from .._core._state import ClientState
from ._base import STAGE_PUBREL, STAGE_QOS1, STAGE_QOS2, ChangeKind, SessionChange, SessionStore

__all__ = ["StoreBinding"]

_SENT = ChangeKind.SENT
_DONE = ChangeKind.DONE
T = TypeVar("T")


async def _guarded(call: Awaitable[T]) -> T:
    """Await a store call; a failure of the store (not ours) becomes an :class:`MqttError`."""
    try:
        return await call
    except MqttError:
        raise
    except Exception as exc:
        raise MqttError(f"the session store failed: {exc!r}") from exc


class StoreBinding:
    """The event loop's side of a :class:`~trio_mqtt.SessionStore` (one per connection).

    Args:
        store: the store.
        client_id: the key of the session.
        clean_start: when True the stored session is discarded instead of restored (the broker
            discards its side too).
    """

    def __init__(self, store: SessionStore, client_id: str, clean_start: bool) -> None:
        self.store = store
        self.client_id = client_id
        self.clean_start = clean_start
        #: True when changes are waiting for :meth:`flush`.
        self.pending = False
        self._durable = bool(store.durable)
        self._changes: list[SessionChange] = []
        # (flush that must have committed, events), held back in order until the incoming
        # QoS 2 ids they carry are durable; 0 = nothing of their own to wait for
        self._held: deque[tuple[int, list[Event]]] = deque()
        self._flushes_started = 0
        self._state: ClientState | None = None
        self._opened = False

    async def start(self, state: ClientState) -> None:
        """Open the store and load its session into ``state`` (before the first connect)."""
        snapshot = await _guarded(self.store.open(self.client_id))
        self._opened = True
        if self.clean_start:
            if snapshot.outgoing or snapshot.incoming:
                await _guarded(self.store.save(SessionSnapshot()))
        else:
            state.restore_session(snapshot)
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
                # Everything recorded so far is void; the re-sent publishes follow as SENT.
                changes.clear()
                changes.append(SessionChange(ChangeKind.CLEARED, 0))
        self.pending = bool(changes)
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

        Returns the held-back events this commit made safe to deliver, oldest first.

        Raises:
            MqttError: the store failed (its exception is the cause). The connection ends
                without sending; the batch is kept and retried first by the next flush, so
                the store never misses a change (every change is idempotent).
        """
        changes = self._changes
        self._flushes_started += 1
        generation = self._flushes_started
        if changes:
            self._changes = []
            self.pending = False
            try:
                await _guarded(self.store.apply(changes))
            except BaseException:
                self._changes[:0] = changes  # the next flush commits them (and counts)
                self.pending = True
                raise
        # Events recorded while the commit ran may carry ids it did not cover: they wait
        # for the next flush, and so does everything after them.
        released: list[Event] = []
        held = self._held
        while held and held[0][0] <= generation:
            released += held.popleft()[1]
        return released

    async def finish(self) -> None:
        """Save the final session and release the store (the connection is over)."""
        if not self._opened:
            return
        self._opened = False
        try:
            if self._state is not None:
                self._changes = []
                self.pending = False
                await _guarded(self.store.save(self._state.export_session()))
        finally:
            await _guarded(self.store.close())
