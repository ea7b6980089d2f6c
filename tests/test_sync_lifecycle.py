"""The synchronous API's lifecycle matrix: every public call in every state of a connection.

The same contract as tests/test_lifecycle_matrix.py for :mod:`trio_mqtt.sync`: a call either
completes or raises a typed error (an :class:`~trio_mqtt.MqttError` subclass,
``trio.ClosedResourceError`` for a closed handle, ``trio.WouldBlock`` for a ``*_nowait`` call
that would wait) promptly once its outcome is known. The states are made against a private
mosquitto (stopped for the "lost" states). A read that must wait in a live state is made in a
second thread and must still be waiting after a moment; closing the connection must then end
it with :class:`~trio_mqtt.ConnectionClosed` or the end of iteration.

Every public member of :class:`trio_mqtt.sync.Client` and :class:`trio_mqtt.sync.Connection`
has a cell; a test checks the list against the classes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from trio_mqtt import (
    ConnectionClosed,
    ConnectionLost,
    MqttError,
    MqttOptions,
    QoS,
    ReconnectPolicy,
    UnknownPacketIdError,
)
from trio_mqtt.sync import Client, Connection, connect
from trio_mqtt.testing import MosquittoBroker

pytestmark = pytest.mark.usefixtures("sync_watchdog")
#: how long a call may take once its outcome is known ("promptly")
PROMPT = 5.0
#: how long a waiting read is watched before the connection is closed under it
WATCH = 0.3


@dataclass
class Situation:
    """A sync connection brought into one state, and what its calls should give there."""

    client: Client
    connection: Connection
    #: the error type of calls that wait for the broker, or None when they complete
    refusal: type[BaseException] | None
    #: the error type of plain publishes and acks of unknown ids (None: they complete)
    publish_refusal: type[BaseException] | None
    #: the error a read reports (None: reads wait for events, the connection is live)
    read_refusal: type[BaseException] | None
    #: another handle kept open (so closing ``client`` does not end the session)
    kept: Client | None = None


def _options(broker: MosquittoBroker, **kwargs: Any) -> MqttOptions:
    return MqttOptions("sync-matrix", broker.host, broker.port, keep_alive=10, **kwargs)


def _wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PROMPT
    while not predicate():
        assert time.monotonic() < deadline, "the state was not reached"
        time.sleep(0.01)


def _drain(connection: Connection) -> None:
    """Read the events buffered so far (CONNECT, CONNACK) so reads start from an empty buffer."""
    while connection.try_recv() is not None:
        pass


def connected(broker: MosquittoBroker) -> Situation:
    client, connection = connect(_options(broker))
    _drain(connection)
    return Situation(client, connection, None, None, None)


def reconnecting(broker: MosquittoBroker) -> Situation:
    policy = ReconnectPolicy(initial_delay=60.0, max_delay=60.0, jitter=0.0)
    client, connection = connect(_options(broker, reconnect=policy))
    _drain(connection)
    broker.stop()
    _wait_until(lambda: not connection.connected)
    # the Disconnected/Reconnecting events are read: the state is "waiting out the backoff"
    _wait_until(lambda: connection.statistics().buffered_events > 1)
    _drain(connection)
    return Situation(client, connection, None, None, None)


def failed(broker: MosquittoBroker) -> Situation:
    client, connection = connect(_options(broker))
    _drain(connection)
    broker.stop()
    _wait_until(lambda: not connection.connected)
    return Situation(client, connection, ConnectionLost, None, ConnectionLost)


def disconnected(broker: MosquittoBroker) -> Situation:
    client, connection = connect(_options(broker))
    client.disconnect()
    return Situation(client, connection, ConnectionClosed, ConnectionClosed, ConnectionClosed)


def closed(broker: MosquittoBroker) -> Situation:
    client, connection = connect(_options(broker))
    connection.close()
    return Situation(client, connection, ConnectionClosed, ConnectionClosed, ConnectionClosed)


def handle_closed(broker: MosquittoBroker) -> Situation:
    """The connection is up, but the call is made on a client handle that was closed."""
    first, connection = connect(_options(broker))
    handle = first.clone()
    handle.close()
    closed_handle = trio.ClosedResourceError
    return Situation(handle, connection, closed_handle, closed_handle, None, kept=first)


STATES: dict[str, Callable[[MosquittoBroker], Situation]] = {
    "connected": connected,
    "reconnecting": reconnecting,
    "failed": failed,
    "disconnected": disconnected,
    "closed": closed,
    "handle_closed": handle_closed,
}

#: the outcome of a read that was still waiting until the connection was closed under it
WAITED = "waited"

Call = Callable[[Situation], object]


def _tracked(s: Situation) -> object:
    return s.client.publish_tracked("m/t", b"x", qos=QoS.EXACTLY_ONCE).wait()


def _tracked_nowait(s: Situation) -> object:
    return s.client.publish_tracked_nowait("m/t", b"x", qos=QoS.AT_LEAST_ONCE).wait()


def _recv_past_buffered(s: Situation) -> object:
    for _ in range(100):
        s.connection.recv()  # buffered events first; then it waits, or raises the error
    raise AssertionError("more than 100 buffered events")


def _try_recv_past_buffered(s: Situation) -> object:
    for _ in range(100):
        if s.connection.try_recv() is None:
            raise trio.WouldBlock  # nothing buffered: what a live connection gives
    raise AssertionError("more than 100 buffered events")


def _recv_timeout(s: Situation) -> object:
    try:
        for _ in range(100):
            s.connection.recv_timeout(WATCH)
    except TimeoutError:
        return WAITED
    raise AssertionError("more than 100 events")


def _iterate(name: str) -> Call:
    def call(s: Situation) -> object:
        for _ in getattr(s.connection, name)():
            pass
        return None

    return call


#: (name, call, kind): "request", "publish" and "ack" as in the async matrix; "local" is the
#: connection's own business (after close() it raises ConnectionClosed, as every sync call on
#: an ended connection does: the class docs say so); "always" works in every state (close(),
#: the flags); "read" blocks for events (still waiting while live, the error otherwise),
#: "timed_read" and "read_nowait" are its twins; "client_local" is "local" on the client
#: handle (a closed handle raises ClosedResourceError); "iterate" is iter() (it yields connection
#: errors and reconnects, so it waits until the session is over, then ends); "messages" raises
#: connection errors and ends with the session; "misuse" must raise in every state (the
#: reauthentication calls: no authenticator is configured, and mosquitto has no AUTH).
CALLS: list[tuple[str, Call, str]] = [
    ("publish_q0", lambda s: s.client.publish("m/a", b"x"), "publish"),
    ("publish_q1", lambda s: s.client.publish("m/a", b"x", qos=QoS.AT_LEAST_ONCE), "publish"),
    ("publish_nowait", lambda s: s.client.publish_nowait("m/a", b"x"), "publish"),
    ("publish_tracked", _tracked, "request"),
    ("publish_tracked_nowait", _tracked_nowait, "request"),
    ("subscribe", lambda s: s.client.subscribe("m/#", QoS.AT_LEAST_ONCE), "request"),
    ("subscribe_nowait", lambda s: s.client.subscribe_nowait("m/#").wait(), "request"),
    ("subscribe_many", lambda s: s.client.subscribe_many(["m/a", ("m/b", 1)]), "request"),
    ("subscribe_many_nowait", lambda s: s.client.subscribe_many_nowait(["m/a"]).wait(), "request"),
    ("unsubscribe", lambda s: s.client.unsubscribe("m/#"), "request"),
    ("unsubscribe_nowait", lambda s: s.client.unsubscribe_nowait("m/#").wait(), "request"),
    ("unsubscribe_many", lambda s: s.client.unsubscribe_many(["m/a"]), "request"),
    (
        "unsubscribe_many_nowait",
        lambda s: s.client.unsubscribe_many_nowait(["m/a"]).wait(),
        "request",
    ),
    ("reauthenticate", lambda s: s.client.reauthenticate(), "misuse"),
    ("reauthenticate_nowait", lambda s: s.client.reauthenticate_nowait().wait(), "misuse"),
    ("ack", lambda s: s.client.ack(7), "ack"),
    ("ack_nowait", lambda s: s.client.ack_nowait(7), "ack"),
    ("clone_and_close", lambda s: s.client.clone().close(), "handle"),
    ("closed", lambda s: s.client.closed, "always"),
    ("disconnect", lambda s: s.client.disconnect(), "client_local"),
    ("disconnect_nowait", lambda s: s.client.disconnect_nowait(0), "client_local"),
    # Connection
    ("connected", lambda s: s.connection.connected, "always"),
    ("running", lambda s: s.connection.running, "always"),
    ("statistics", lambda s: s.connection.statistics(), "local"),
    ("reconnect", lambda s: s.connection.reconnect(), "local"),
    ("close", lambda s: s.connection.close(), "always"),
    ("recv", _recv_past_buffered, "read"),
    ("recv_timeout", _recv_timeout, "timed_read"),
    ("try_recv", _try_recv_past_buffered, "read_nowait"),
    ("iter", _iterate("iter"), "iterate"),
    ("messages", _iterate("messages"), "messages"),
]

COVERED_ELSEWHERE = {"clone": "clone_and_close", "__iter__": "iter"}


def _expected(s: Situation, kind: str, state: str) -> object:
    over = state in ("disconnected", "closed")
    if kind == "request":
        # while reconnecting the outcome is not known yet: the request waits for the next
        # connection (and close() releases it)
        return WAITED if state == "reconnecting" else s.refusal
    if kind == "publish":
        return s.publish_refusal
    if kind == "ack":
        return s.publish_refusal or UnknownPacketIdError
    if kind == "misuse":
        return trio.ClosedResourceError if state == "handle_closed" else MqttError
    if kind == "handle":
        if state == "handle_closed":
            return trio.ClosedResourceError
        return ConnectionClosed if state == "closed" else None
    if kind in ("local", "client_local"):
        if state == "handle_closed" and kind == "client_local":
            return trio.ClosedResourceError
        return ConnectionClosed if state == "closed" else None
    if kind == "always":
        return None
    if kind in ("read", "timed_read"):
        return WAITED if s.read_refusal is None else s.read_refusal
    if kind == "read_nowait":
        return trio.WouldBlock if s.read_refusal is None else s.read_refusal
    if kind == "iterate":
        return None if over else WAITED
    if kind == "messages":
        if over:
            return None
        return WAITED if s.read_refusal is None else s.read_refusal
    raise AssertionError(kind)


def _run_watched(call: Call, s: Situation, may_wait: bool) -> object:
    """Run ``call``; if it is still running after WATCH seconds, close the connection under
    it and expect it to end promptly (ConnectionClosed or a clean end) -> WAITED."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call(s))
        except (MqttError, trio.ClosedResourceError, trio.WouldBlock) as exc:
            outcome.append(exc)
        except BaseException as exc:  # pragma: no cover - what the test forbids
            outcome.append(exc)

    thread = threading.Thread(target=target, name="matrix-call", daemon=True)
    thread.start()
    thread.join(WATCH if may_wait else PROMPT)
    if thread.is_alive():
        assert may_wait, "the call hung"
        s.connection.close()
        thread.join(PROMPT)
        assert not thread.is_alive(), "close() did not end the waiting call"
        ended = outcome[0]
        # the read was released: by the end of iteration, ConnectionClosed, or an event that
        # close() itself produced (the DISCONNECT going out)
        assert not isinstance(ended, BaseException) or isinstance(ended, ConnectionClosed), ended
        return WAITED
    return outcome[0]


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize(("name", "call", "kind"), CALLS, ids=[c[0] for c in CALLS])
def test_every_sync_call_in_every_state_completes_or_raises_typed(
    mosquitto: MosquittoBroker, state: str, name: str, call: Call, kind: str
) -> None:
    s = STATES[state](mosquitto)
    try:
        may_wait = _expected(s, kind, state) == WAITED
        started = time.monotonic()
        outcome = _run_watched(call, s, may_wait)
        if not isinstance(outcome, str):
            assert time.monotonic() - started < PROMPT, f"{name} in {state} was slow"
        if not isinstance(outcome, BaseException | str):
            outcome = None  # it completed; the value itself is checked by other tests
        if isinstance(outcome, BaseException) and not isinstance(
            outcome, MqttError | trio.ClosedResourceError | trio.WouldBlock
        ):
            pytest.fail(f"{name} in {state} raised an untyped {outcome!r}")
        expected = _expected(s, kind, state)
        if expected is None or isinstance(expected, str):
            assert outcome == expected, f"{name} in {state}: {outcome!r}, not {expected!r}"
        else:
            assert isinstance(expected, type)
            assert isinstance(outcome, expected), f"{name} in {state}: {outcome!r}, not {expected}"
    finally:
        s.connection.close()
        if s.kept is not None:
            s.kept.close()


def test_the_sync_matrix_has_a_cell_for_every_public_member() -> None:
    names = {name for name, *_ in CALLS}
    members = {n for cls in (Client, Connection) for n in dir(cls) if not n.startswith("_")}
    missing = sorted(
        member
        for member in members | {"__iter__"}
        if member not in names
        and f"{member}_q0" not in names
        and COVERED_ELSEWHERE.get(member) not in names
    )
    assert not missing, f"no sync matrix cell for {missing}"
