"""Saving the broker's sessions and retained messages in SQLite, and loading them back.

Theory of operation
-------------------
The store takes a snapshot, as mosquitto's ``persistence`` does: :meth:`BrokerStore.save`
rewrites the whole state in one transaction (sessions with their subscriptions, queued and
in-flight QoS 1/2 deliveries with their phase and packet id, the incoming QoS 2 packet ids not
yet released, delayed wills, retained messages), and :meth:`BrokerStore.load` builds a
:class:`~trio_mqtt.broker.Broker` from it. :func:`~trio_mqtt.broker.open_mqtt_broker` with
``persistence=PATH`` loads on start, saves every ``autosave_interval`` seconds when something
changed, and saves on exit; so a restarted broker resumes QoS 1/2 flows where they stood
(sending PUBREL, not the PUBLISH again, for a message already received), and a crash loses at
most the last interval.

Messages are stored as MQTT 5 PUBLISH packets (the codec is the serialiser); times are stored as
seconds remaining at the save, plus the wall-clock time of the save, so a session expiry or a
will delay keeps running while the broker is down. Only sessions that outlive their connection
(session expiry > 0) are stored.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

from .._core._broker import NEVER, Broker, BrokerConfig, Delivery, DeliveryPhase, Session
from .._core._codec import decode_packet, encode
from .._core._packets import ProtocolVersion, Publish, QoS, RetainHandling, Subscription
from .._core._router import Message, Route

__all__ = ["BrokerStore"]

_V5 = ProtocolVersion.V5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, packet BLOB NOT NULL, expires_in REAL, sender TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, expires_in REAL,
    username TEXT, next_packet_id INTEGER NOT NULL, incoming_qos2 TEXT NOT NULL,
    will BLOB, will_expires_in REAL, will_in REAL);
CREATE TABLE IF NOT EXISTS subscriptions (
    client_id TEXT NOT NULL, topic_filter TEXT NOT NULL, qos INTEGER NOT NULL,
    no_local INTEGER NOT NULL, retain_as_published INTEGER NOT NULL,
    retain_handling INTEGER NOT NULL, identifier INTEGER,
    PRIMARY KEY (client_id, topic_filter));
CREATE TABLE IF NOT EXISTS deliveries (
    client_id TEXT NOT NULL, position INTEGER NOT NULL, packet_id INTEGER NOT NULL,
    phase INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
    subscription_ids TEXT NOT NULL, packet BLOB NOT NULL, expires_in REAL, sender TEXT,
    PRIMARY KEY (client_id, position));
"""


def _pack(message: Message) -> bytes:
    qos = QoS(message.qos)
    packet = Publish(
        message.topic,
        message.payload,
        qos,
        message.retain,
        False,
        1 if qos else 0,
        message.properties,
    )
    return encode(packet, _V5)


def _unpack(data: bytes, expires_in: float | None, sender: str | None, now: float) -> Message:
    packet = decode_packet(data, _V5)
    assert isinstance(packet, Publish)
    return Message(
        packet.topic,
        packet.payload,
        int(packet.qos),
        packet.retain,
        packet.properties,
        None if expires_in is None else now + expires_in,
        sender,
    )


def _remaining(deadline: float | None, now: float) -> float | None:
    return None if deadline is None else max(0.0, deadline - now)


class BrokerStore:
    """A broker's state in an SQLite file (created on first use).

    Args:
        path: the database file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def save(self, broker: Broker, now: float) -> None:
        """Replace the stored state with ``broker``'s (``now`` on the broker's clock)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("meta", "retained", "sessions", "subscriptions", "deliveries"):
                db.execute(f"DELETE FROM {table}")
            db.execute("INSERT INTO meta VALUES ('saved_at', ?)", (repr(time.time()),))
            db.executemany(
                "INSERT INTO retained VALUES (?, ?, ?, ?)",
                [
                    (topic, _pack(m), _remaining(m.expires_at, now), m.sender)
                    for topic, m in broker.router.retained.items()
                    if not topic.startswith("$SYS/")
                ],
            )
            for session in broker.sessions.values():
                if session.expiry_interval:
                    self._save_session(session, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _save_session(self, session: Session, now: float) -> None:
        db = self._db
        expires_in: float | None
        if session.connection is not None:  # saved while connected: as if it just went away
            expires_in = (
                None if session.expiry_interval == NEVER else float(session.expiry_interval)
            )
        else:
            expires_in = _remaining(session.expires_at, now)
        will = session.will
        db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session.client_id,
                session.expiry_interval,
                expires_in,
                session.username,
                session.next_packet_id,
                json.dumps(sorted(session.incoming_qos2)),
                None if will is None else _pack(will),
                None if will is None else _remaining(will.expires_at, now),
                _remaining(session.will_at, now),
            ),
        )
        db.executemany(
            "INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    session.client_id,
                    route.topic_filter,
                    int(route.options.qos),
                    route.options.no_local,
                    route.options.retain_as_published,
                    int(route.options.retain_handling),
                    route.identifier,
                )
                for route in session.subscriptions.values()
            ],
        )
        deliveries = [*session.inflight.values(), *session.queue]
        db.executemany(
            "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    session.client_id,
                    position,
                    d.packet_id,
                    d.phase.value,
                    d.qos,
                    d.retain,
                    json.dumps(list(d.subscription_ids)),
                    _pack(d.message),
                    _remaining(d.message.expires_at, now),
                    d.message.sender,
                )
                for position, d in enumerate(deliveries)
            ],
        )

    def load(self, config: BrokerConfig | None, now: float) -> Broker:
        """A broker with the stored state (an empty one for an empty store)."""
        broker = Broker(config)
        db = self._db
        row = db.execute("SELECT value FROM meta WHERE key = 'saved_at'").fetchone()
        down = max(0.0, time.time() - float(row[0])) if row else 0.0

        def at(remaining: float | None) -> float | None:
            return None if remaining is None else now + remaining - down

        for topic, packet, expires_in, sender in db.execute("SELECT * FROM retained"):
            message = _unpack(packet, expires_in, sender, now - down)
            broker.router.retained[topic] = message
        for (
            client_id,
            expiry,
            expires_in,
            username,
            next_pid,
            incoming,
            will,
            will_expires_in,
            will_in,
        ) in db.execute("SELECT * FROM sessions"):
            session = Session(client_id, expiry, username)
            session.expires_at = at(expires_in)
            session.next_packet_id = next_pid
            session.incoming_qos2 = set(json.loads(incoming))
            if will is not None:
                session.will = _unpack(will, will_expires_in, client_id, now - down)
                session.will_at = at(will_in) if will_in is not None else now
            broker.sessions[client_id] = session
        for client_id, topic_filter, qos, no_local, rap, handling, identifier in db.execute(
            "SELECT * FROM subscriptions"
        ):
            session = broker.sessions[client_id]
            options = Subscription(
                topic_filter, QoS(qos), bool(no_local), bool(rap), RetainHandling(handling)
            )
            route = Route(session, topic_filter, options, identifier)
            broker.router.add(route)
            session.subscriptions[topic_filter] = route
        for client_id, _, pid, phase, qos, retain, ids, packet, expires_in, sender in db.execute(
            "SELECT * FROM deliveries ORDER BY client_id, position"
        ):
            session = broker.sessions[client_id]
            delivery = Delivery(
                _unpack(packet, expires_in, sender, now - down),
                qos,
                bool(retain),
                tuple(json.loads(ids)),
                DeliveryPhase(phase),
                pid,
            )
            if delivery.phase is DeliveryPhase.QUEUED:
                session.enqueue(delivery)
            else:
                session.inflight[pid] = delivery
        return broker
