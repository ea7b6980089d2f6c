"""The session store interface, the change records it consumes, and the in-memory store.

Theory of operation
-------------------
The sans-IO core keeps the whole session in memory (:class:`~trio_mqtt.sansio.ClientState`).
A *session store* keeps a copy somewhere else, keyed by client id, so that a later connection
(another ``open_mqtt_connection`` in the same process, or a restarted process) can resume it:

* ``open(client_id)`` returns the stored :class:`~trio_mqtt.sansio.SessionSnapshot`, which the
  event loop loads into the core before the first CONNECT;
* a *durable* store (``durable = True``) is also told every change as it happens, as a batch
  of :class:`SessionChange` records handed to ``apply()``; the event loop awaits ``apply()``
  before it writes the bytes those changes describe, so whatever reached the broker is on disk
  first;
* with a durable store, a QoS 1/2 publish is first *queued* in the store (QUEUED), committed
  before ``publish()`` returns, and moved to the flows (UNQUEUED and SENT, one batch) just
  before it is written;
* ``save(snapshot)`` replaces everything (a clean start saves the empty snapshot, a closing
  connection its final state); ``close()`` releases the client id.

The in-memory store is not durable: it costs nothing while the connection runs and only takes
the final snapshot when the connection ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from .._core._errors import InvalidOptionError
from .._core._packets import Publish
from .._core._session import SessionSnapshot

__all__ = [
    "ChangeKind",
    "MemorySessionStore",
    "SessionChange",
    "SessionStore",
]


class ChangeKind:
    """The kinds of :class:`SessionChange` (plain ints, cheap to build on the hot path)."""

    #: An outgoing QoS 1/2 PUBLISH was sent (``publish`` set); a re-send replaces it in place.
    SENT = 1
    #: Our PUBREL for ``packet_id`` was sent, so the flow now awaits PUBCOMP.
    RELEASED = 2
    #: The broker finished the flow at ``stage`` (1 PUBACK, 2 failing PUBREC, 3 PUBCOMP).
    DONE = 3
    #: We answered an incoming QoS 2 PUBLISH with PUBREC, so its id is held until PUBREL.
    HOLD_INCOMING = 4
    #: We sent PUBCOMP for an incoming QoS 2 message, so its id is forgotten.
    RELEASE_INCOMING = 5
    #: The broker lost the session, so every flow and incoming id stored is void (queued
    #: publishes are ours, not the broker's: they stay).
    CLEARED = 6
    #: A QoS 1/2 publish was admitted and waits to be sent (``publish`` set, ``packet_id``
    #: its queue number, ``time`` when it was admitted).
    QUEUED = 7
    #: The publish queued under number ``packet_id`` left the queue (sent: a SENT change
    #: follows in the same batch; or dropped).
    UNQUEUED = 8


#: Stored stages of an outgoing flow.
STAGE_QOS1 = 1  # PUBLISH awaiting PUBACK
STAGE_QOS2 = 2  # PUBLISH awaiting PUBREC
STAGE_PUBREL = 3  # PUBREL awaiting PUBCOMP


class SessionChange(NamedTuple):
    """One change to a stored session, in the order it happened.

    Attributes:
        kind: one of the :class:`ChangeKind` constants.
        packet_id: the packet id concerned (0 for ``CLEARED``).
        publish: the full PUBLISH for ``SENT``; None otherwise.
        stage: for ``DONE``, the stage the flow must be at for the change to apply (a broker
            acknowledging the wrong kind of flow must not erase it).
        time: for ``QUEUED``, when the publish was admitted, in seconds since the epoch (its
            MQTT 5 message expiry counts from then, across restarts too).
    """

    kind: int
    packet_id: int
    publish: Publish | None = None
    stage: int = 0
    time: float = 0.0


@runtime_checkable
class SessionStore(Protocol):
    """Where a client session is kept between connections and processes.

    A store serves one connection at a time; ``open`` and ``close`` bracket the use. An
    exception from a store (for example ``sqlite3.Error``) ends the network connection before
    anything unrecorded is sent, as an :class:`~trio_mqtt.MqttError` caused by it; a failed
    :meth:`apply` batch is handed over again, first, on the next attempt.

    Attributes:
        durable: True when the store wants every change through :meth:`apply` before the
            bytes concerned are written (crash-safe stores). False stores only get
            :meth:`save` when the connection ends.
    """

    durable: bool

    async def open(self, client_id: str) -> SessionSnapshot:
        """Claim ``client_id`` and return its stored session (empty when there is none)."""
        ...

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        """Record a batch of changes atomically (durable stores only)."""
        ...

    async def save(self, snapshot: SessionSnapshot) -> None:
        """Replace the stored session with ``snapshot`` atomically."""
        ...

    async def close(self) -> None:
        """Release the client id claimed by :meth:`open`."""
        ...


class MemorySessionStore:
    """Sessions kept in this process's memory, one per client id.

    Pass the same instance to successive connections to carry the session from one
    ``open_mqtt_connection`` block to the next (unacknowledged publishes, PUBREL state and
    incoming QoS 2 ids); without a store each connection starts empty. Nothing survives the
    process, and the state is saved only when a connection ends, so it costs nothing while
    messages flow.
    """

    durable = False

    def __init__(self) -> None:
        self._sessions: dict[str, SessionSnapshot] = {}
        self._current: str | None = None

    def snapshot(self, client_id: str) -> SessionSnapshot:
        """The session stored for ``client_id`` (empty when there is none)."""
        return self._sessions.get(client_id, SessionSnapshot())

    async def open(self, client_id: str) -> SessionSnapshot:
        """Claim ``client_id`` and return its stored session.

        Raises:
            InvalidOptionError: the store already serves a connection.
        """
        if self._current is not None:
            raise InvalidOptionError(
                f"this session store is in use by client {self._current!r}: "
                "a store serves one connection at a time"
            )
        self._current = client_id
        return self.snapshot(client_id)

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        """Not used: the in-memory store only keeps the final snapshot."""

    async def save(self, snapshot: SessionSnapshot) -> None:
        """Keep ``snapshot`` as the session of the open client id."""
        if self._current is None:
            raise InvalidOptionError("save() needs an open session")
        if snapshot.outgoing or snapshot.incoming or snapshot.queued:
            self._sessions[self._current] = snapshot
        else:
            self._sessions.pop(self._current, None)

    async def close(self) -> None:
        """Release the client id."""
        self._current = None
