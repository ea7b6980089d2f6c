"""A crash-safe session store on the standard library's :mod:`sqlite3`.

Theory of operation
-------------------
One database file per client id, in WAL mode with an exclusive lock held while a connection
uses it (a second process with the same client id is refused instead of corrupting the
session). Three tables: ``outgoing`` (packet id, stage, the encoded PUBLISH or NULL once only
the PUBREL matters) ordered by an integer key that grows with each new flow, ``incoming``
(packet ids of QoS 2 messages awaiting PUBREL) and ``outbox`` (QoS 1/2 publishes admitted and
not yet sent, keyed by their queue number, with the time they were admitted). Schema 1 files
(without the outbox) are upgraded when opened. Every :meth:`SqliteSessionStore.apply` is one
transaction run in a worker thread (``trio.to_thread.run_sync``), so the event loop never
blocks on the disk; the event loop awaits it before writing the bytes the batch describes.

Publishes are stored as MQTT 5 PUBLISH packets (the codec is the serialisation), whatever
protocol version the session speaks: v5 can express everything a 3.1.1 publish has.

Durability: with ``synchronous="NORMAL"`` (the default) a committed batch survives the process
being killed at any point; a power failure can lose the last batches. ``synchronous="FULL"``
syncs the file on every commit, which survives power failures and costs a disk flush per
batch.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import trio

from .._core._codec import PacketDecoder, encode
from .._core._errors import InvalidOptionError
from .._core._packets import ProtocolVersion, Publish, PubRel
from .._core._session import MQTT_MAX_PACKET, QueuedPublish, SessionSnapshot
from ._base import STAGE_PUBREL, STAGE_QOS1, STAGE_QOS2, ChangeKind, SessionChange

if TYPE_CHECKING:  # sqlite3 (1.3 MiB) is imported only when a store is opened
    import sqlite3

__all__ = ["SqliteSessionStore"]

_SCHEMA_VERSION = 2
#: older schemas this version opens (and upgrades: the new tables are created)
_UPGRADES = ("1",)
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_V5 = ProtocolVersion.V5

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outgoing (seq INTEGER PRIMARY KEY,"
    " packet_id INTEGER NOT NULL UNIQUE, stage INTEGER NOT NULL, packet BLOB)",
    "CREATE TABLE IF NOT EXISTS incoming (packet_id INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS outbox (number INTEGER PRIMARY KEY, queued REAL NOT NULL,"
    " packet BLOB NOT NULL)",
)
# Multi-row statements: ``{}`` becomes one placeholder group per row. One statement per kind
# of change and batch keeps the worker thread from taking the GIL back once per row, which is
# what costs time while the event loop is busy.
_PUT = (
    "INSERT INTO outgoing (packet_id, stage, packet) VALUES {} "
    "ON CONFLICT (packet_id) DO UPDATE SET stage = excluded.stage, packet = excluded.packet"
)
_DONE = "DELETE FROM outgoing WHERE (packet_id, stage) IN (VALUES {})"
_HOLD = "INSERT OR IGNORE INTO incoming (packet_id) VALUES {}"
_UNHOLD = "DELETE FROM incoming WHERE packet_id IN ({})"
_QUEUE = "INSERT OR REPLACE INTO outbox (number, queued, packet) VALUES {}"
_UNQUEUE = "DELETE FROM outbox WHERE number IN ({})"
#: rows per statement (at most 3 parameters each: far below SQLite's variable limit)
_ROWS = 256


def session_file_name(client_id: str) -> str:
    """The file name of a client id's database: the id percent-encoded, or hashed if long."""
    name = quote(client_id, safe="")
    if len(name) > 180:
        name = "sha256-" + hashlib.sha256(client_id.encode("utf-8")).hexdigest()
    return name + ".sqlite3"


class SqliteSessionStore:
    """Sessions kept in SQLite files (one per client id) that survive a crash of the process.

    Outgoing QoS 1/2 publishes are on disk before they are written to the network and stay
    until the broker acknowledges them; QoS 2 flows remember the PUBREL stage; ids of incoming
    QoS 2 messages are on disk before our PUBREC leaves and until PUBREL. A process restarted
    with the same directory and client id (and ``clean_start=False``) resumes the session:
    nothing is lost and nothing is delivered twice at QoS 2.

    Args:
        directory: where the database files live (created when missing).
        synchronous: SQLite's ``synchronous`` setting: ``"NORMAL"`` survives a killed
            process, ``"FULL"`` also a power failure (slower).
        in_thread: run each batch's transaction in a worker thread (default), so a slow disk
            never stalls the event loop. ``False`` runs it on the event loop's thread, which
            saves the thread round trip (a tenth to a third more messages per second in the
            measurements of :doc:`/reconnects`) when commits are cheap: ``"NORMAL"`` on a
            local disk. Opening, saving and closing always use a thread.

    Raises:
        InvalidOptionError: an unknown ``synchronous`` value.
    """

    durable = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        in_thread: bool = True,
    ) -> None:
        level = synchronous.upper()
        if level not in _SYNCHRONOUS:
            raise InvalidOptionError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.directory = Path(directory)
        self.synchronous = level
        self.in_thread = in_thread
        self._db: sqlite3.Connection | None = None
        self._client_id: str | None = None
        self._lock = trio.Lock()

    def path_for(self, client_id: str) -> Path:
        """The database file of ``client_id``."""
        return self.directory / session_file_name(client_id)

    # ----------------------------------------------------------------- async API
    async def open(self, client_id: str) -> SessionSnapshot:
        """Open (or create) the file of ``client_id``, lock it, and return its session.

        Raises:
            InvalidOptionError: the store already serves a connection, ``client_id`` is empty,
                the file belongs to another client id, or another process holds it.
        """
        if not client_id:
            raise InvalidOptionError("a session store needs a non-empty client id")
        async with self._lock:
            if self._db is not None:
                raise InvalidOptionError(
                    f"this session store is in use by client {self._client_id!r}: "
                    "a store serves one connection at a time"
                )
            db, snapshot = await trio.to_thread.run_sync(self._open_sync, client_id)
            self._db = db
            self._client_id = client_id
            return snapshot

    async def apply(self, changes: Sequence[SessionChange]) -> None:
        """Commit a batch of changes in one transaction (in a worker thread)."""
        async with self._lock:
            db = self._need_db()
            statements = _plan(changes)  # encoding here leaves the thread little Python to run
            if self.in_thread:
                await trio.to_thread.run_sync(_run_sync, db, statements)
            else:
                _run_sync(db, statements)
                await trio.lowlevel.checkpoint()

    async def save(self, snapshot: SessionSnapshot) -> None:
        """Replace the stored session with ``snapshot`` in one transaction."""
        async with self._lock:
            db = self._need_db()
            await trio.to_thread.run_sync(_save_sync, db, snapshot)

    async def close(self) -> None:
        """Close the file and release its lock."""
        async with self._lock:
            db = self._db
            self._db = None
            self._client_id = None
            if db is not None:
                await trio.to_thread.run_sync(db.close)

    # ----------------------------------------------------------------- sync helpers
    def read(self, client_id: str) -> SessionSnapshot:
        """The session stored for ``client_id``, read synchronously (for inspection and tests).

        The file must not be in use by a connection (its lock is exclusive).
        """
        path = self.path_for(client_id)
        if not path.exists():
            return SessionSnapshot()
        import sqlite3

        db = sqlite3.connect(path, timeout=1.0, isolation_level=None)
        try:
            return _read_sync(db)
        finally:
            db.close()

    def _need_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise InvalidOptionError("the session store is not open")
        return self._db

    def _open_sync(self, client_id: str) -> tuple[sqlite3.Connection, SessionSnapshot]:
        import sqlite3

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(client_id)
        # A short busy timeout: the file is either free or held for a whole connection.
        db = sqlite3.connect(path, timeout=0.1, isolation_level=None, check_same_thread=False)
        try:
            # Exclusive locking before WAL: no shared-memory index, and the lock taken by the
            # first write below is held until close, so a second process cannot interleave.
            try:
                db.execute("PRAGMA locking_mode = EXCLUSIVE")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(f"PRAGMA synchronous = {self.synchronous}")
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                raise InvalidOptionError(
                    f"the session file {str(path)!r} is in use by another connection ({exc})"
                ) from None
            for statement in _SCHEMA:
                db.execute(statement)
            stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not stored:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema", str(_SCHEMA_VERSION)), ("client_id", client_id)],
                )
            elif stored.get("client_id") != client_id:
                raise InvalidOptionError(
                    f"the session file {str(path)!r} belongs to client "
                    f"{stored.get('client_id')!r}, not {client_id!r}"
                )
            elif stored.get("schema") in _UPGRADES:
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema'", (str(_SCHEMA_VERSION),)
                )
            elif stored.get("schema") != str(_SCHEMA_VERSION):
                raise InvalidOptionError(
                    f"the session file {str(path)!r} has an unknown schema {stored.get('schema')}"
                )
            snapshot = _read_sync(db)
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db, snapshot


def _read_sync(db: sqlite3.Connection) -> SessionSnapshot:
    import sqlite3

    decoder = PacketDecoder(_V5, MQTT_MAX_PACKET)
    outgoing: list[Publish | PubRel] = []
    rows = db.execute("SELECT packet_id, stage, packet FROM outgoing ORDER BY seq").fetchall()
    for packet_id, stage, blob in rows:
        if stage == STAGE_PUBREL:
            outgoing.append(PubRel(packet_id))
        else:
            (packet,) = decoder.decode(blob)
            assert isinstance(packet, Publish)
            assert packet.packet_id == packet_id
            outgoing.append(packet)
    incoming = tuple(
        pid for (pid,) in db.execute("SELECT packet_id FROM incoming ORDER BY packet_id")
    )
    queued: list[QueuedPublish] = []
    try:
        rows = db.execute("SELECT number, queued, packet FROM outbox ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # a schema 1 file read by read(): no outbox yet
        rows = []
    now = time.time()
    for number, admitted, blob in rows:
        (packet,) = decoder.decode(blob)
        assert isinstance(packet, Publish)
        queued.append(QueuedPublish(number, packet, max(0.0, now - admitted)))
    return SessionSnapshot(tuple(outgoing), incoming, tuple(queued))


Statement = tuple[str, list[object]]


def _run_sync(db: sqlite3.Connection, statements: list[Statement]) -> None:
    """Run prepared statements in one transaction (the only part run in the worker thread)."""
    execute = db.execute
    execute("BEGIN")
    try:
        for sql, parameters in statements:
            execute(sql, parameters)
        execute("COMMIT")
    except BaseException:
        execute("ROLLBACK")
        raise


def _plan(changes: Sequence[SessionChange]) -> list[Statement]:
    """The statements that apply ``changes``: few, multi-row, with publishes already encoded."""
    statements: list[Statement] = []
    for segment in _segments(changes):
        _plan_segment(statements, segment)
    return statements


def _segments(changes: Sequence[SessionChange]) -> Iterator[list[SessionChange]]:
    """Cut ``changes`` where CLEARED comes or a row comes back.

    Inside a segment every change touches a different row, so its changes commute (except
    that new outgoing rows must keep their order, which :func:`_apply_segment` does) and can
    be grouped by kind.
    """
    segment: list[SessionChange] = []
    rows: set[tuple[int, int]] = set()
    for change in changes:
        kind = change.kind
        if kind == ChangeKind.CLEARED:
            if segment:
                yield segment
            yield [change]
            segment = []
            rows.clear()
            continue
        row = (_TABLE[kind], change.packet_id)
        if row in rows:
            yield segment
            segment = []
            rows.clear()
        rows.add(row)
        segment.append(change)
    if segment:
        yield segment


#: which table each kind of change touches (0 outgoing, 1 incoming, 2 outbox)
_TABLE = {
    ChangeKind.SENT: 0,
    ChangeKind.RELEASED: 0,
    ChangeKind.DONE: 0,
    ChangeKind.HOLD_INCOMING: 1,
    ChangeKind.RELEASE_INCOMING: 1,
    ChangeKind.QUEUED: 2,
    ChangeKind.UNQUEUED: 2,
}


def _plan_segment(statements: list[Statement], segment: list[SessionChange]) -> None:
    if segment[0].kind == ChangeKind.CLEARED:
        statements.append(("DELETE FROM outgoing", []))
        statements.append(("DELETE FROM incoming", []))
        return
    # SENT and RELEASED both upsert outgoing rows; one statement keeps new rows in order.
    upsert: list[tuple[object, ...]] = []
    done: list[tuple[object, ...]] = []
    hold: list[tuple[object, ...]] = []
    unhold: list[tuple[object, ...]] = []
    queue: list[tuple[object, ...]] = []
    unqueue: list[tuple[object, ...]] = []
    for kind, packet_id, publish, stage, admitted in segment:
        if kind == ChangeKind.SENT:
            assert publish is not None
            level = STAGE_QOS1 if publish.qos == 1 else STAGE_QOS2
            upsert.append((packet_id, level, encode(publish, _V5)))
        elif kind == ChangeKind.DONE:
            done.append((packet_id, stage))
        elif kind == ChangeKind.RELEASED:
            upsert.append((packet_id, STAGE_PUBREL, None))
        elif kind == ChangeKind.HOLD_INCOMING:
            hold.append((packet_id,))
        elif kind == ChangeKind.RELEASE_INCOMING:
            unhold.append((packet_id,))
        elif kind == ChangeKind.QUEUED:
            assert publish is not None
            queue.append((packet_id, admitted, encode(publish, _V5)))
        elif kind == ChangeKind.UNQUEUED:
            unqueue.append((packet_id,))
    _rows(statements, _DONE, "(?, ?)", done)
    _rows(statements, _PUT, "(?, ?, ?)", upsert)
    _rows(statements, _HOLD, "(?)", hold)
    _rows(statements, _UNHOLD, "?", unhold)
    _rows(statements, _QUEUE, "(?, ?, ?)", queue)
    _rows(statements, _UNQUEUE, "?", unqueue)


def _rows(
    statements: list[Statement], template: str, group: str, rows: list[tuple[object, ...]]
) -> None:
    for start in range(0, len(rows), _ROWS):
        chunk = rows[start : start + _ROWS]
        sql = template.format(", ".join([group] * len(chunk)))
        statements.append((sql, [value for row in chunk for value in row]))


def _save_sync(db: sqlite3.Connection, snapshot: SessionSnapshot) -> None:
    changes = [SessionChange(ChangeKind.CLEARED, 0)]
    for packet in snapshot.outgoing:
        if isinstance(packet, PubRel):
            changes.append(SessionChange(ChangeKind.RELEASED, packet.packet_id))
        else:
            changes.append(SessionChange(ChangeKind.SENT, packet.packet_id, packet))
    changes.extend(SessionChange(ChangeKind.HOLD_INCOMING, pid) for pid in snapshot.incoming)
    now = time.time()
    changes.extend(
        SessionChange(ChangeKind.QUEUED, number, publish, 0, now - waited)
        for number, publish, waited in snapshot.queued
    )
    _run_sync(db, [("DELETE FROM outbox", []), *_plan(changes)])
