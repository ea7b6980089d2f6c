"""ClientState.reconfigure: the CONNECT settings change between connections, the session stays.

What the ``before_connect`` hook relies on: new credentials, will, keep alive and CONNECT
properties reach the next CONNECT, while unacknowledged flows, queued publishes and remembered
subscriptions are replayed exactly as without the change; every session-level setting is
refused, and so is a change while a connection is open.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st
from sansio_broker import SansioBroker, make_client

from trio_mqtt._core._errors import InvalidOptionError, LocalProtocolError
from trio_mqtt._core._packets import (
    ConnAck,
    Connect,
    Properties,
    ProtocolVersion,
    PubAck,
    Publish,
    QoS,
    Subscribe,
    Subscription,
    Will,
)
from trio_mqtt._core._state import SESSION_FIELDS, ConnectionState
from trio_mqtt._core._throttle import Throttle


def test_new_credentials_go_into_the_next_connect_and_the_session_stays() -> None:
    client = make_client(clean_start=False, inflight=2, username="u", password=b"old")
    broker = SansioBroker(client)
    broker.connect()
    client.publish("t", b"1", QoS.AT_LEAST_ONCE, now=0.0)
    client.publish("t", b"2", QoS.AT_LEAST_ONCE, now=0.0)
    client.publish("t", b"3", QoS.AT_LEAST_ONCE, now=0.0)  # waits: the window holds two
    broker.pump()
    broker.drop()
    will = Will("gone", b"bye")
    client.reconfigure(replace(client.config, password=b"new", will=will, keep_alive=7))
    client.connect(1.0)
    (connect,) = broker.expect(Connect)
    assert isinstance(connect, Connect)
    assert (connect.username, connect.password, connect.will, connect.keep_alive) == (
        "u",
        b"new",
        will,
        7,
    )
    broker.send(ConnAck(session_present=True))
    assert broker.pump() == [
        Publish("t", b"1", QoS.AT_LEAST_ONCE, dup=True, packet_id=1),
        Publish("t", b"2", QoS.AT_LEAST_ONCE, dup=True, packet_id=2),
    ]
    broker.send(PubAck(1))
    assert broker.pump() == [Publish("t", b"3", QoS.AT_LEAST_ONCE, packet_id=3)]


def test_v5_connect_properties_change_and_session_expiry_follows() -> None:
    client = make_client(protocol_version=ProtocolVersion.V5)
    broker = SansioBroker(client)
    broker.connect()
    broker.drop()
    props = Properties(session_expiry_interval=120, user_properties=(("token", "t2"),))
    client.reconfigure(replace(client.config, connect_properties=props))
    assert client.session_expiry_interval == 120
    client.connect(0.0)
    (connect,) = broker.expect(Connect)
    assert isinstance(connect, Connect)
    assert connect.properties.user_properties == (("token", "t2"),)
    assert connect.properties.session_expiry_interval == 120


def test_refused_while_a_connection_is_open() -> None:
    client = make_client()
    broker = SansioBroker(client)
    client.connect(0.0)
    with pytest.raises(LocalProtocolError, match="between connections"):
        client.reconfigure(replace(client.config, username="x"))
    broker.expect(Connect)
    broker.send(ConnAck())
    assert client.state is ConnectionState.CONNECTED
    with pytest.raises(LocalProtocolError, match="between connections"):
        client.reconfigure(replace(client.config, username="x"))
    assert client.config.username is None


def test_a_new_client_id_is_refused() -> None:
    client = make_client()
    with pytest.raises(InvalidOptionError, match="client_id"):
        client.reconfigure(replace(client.config, client_id="other"))
    assert client.config.client_id == "c"


CHANGED = {
    "client_id": "other",
    "protocol_version": ProtocolVersion.V5,
    "inflight": 3,
    "receive_maximum": 10,
    "max_incoming_packet_size": 4096,
    "max_outgoing_packet_size": 4096,
    "topic_alias_maximum": 5,
    "outgoing_topic_aliases": True,
    "manual_acks": True,
    "resend_on_session_loss": False,
    "restore_subscriptions": False,
    "throttle": Throttle(messages_per_second=5),
}
ALLOWED = {
    "username": st.text(max_size=5),  # MQTT 3.1.1 sends a password only with a user name
    "password": st.none() | st.binary(max_size=5),
    "keep_alive": st.integers(0, 100),
    "ping_timeout": st.floats(0.1, 10),
    "clean_start": st.just(False),
    "will": st.none() | st.builds(Will, st.sampled_from(["w", "x/y"]), st.binary(max_size=3)),
}


def test_every_session_field_has_a_refused_change() -> None:
    assert set(CHANGED) == set(SESSION_FIELDS)


@settings(max_examples=60, deadline=None)
@given(
    fixed=st.lists(st.sampled_from(sorted(CHANGED)), unique=True, max_size=3),
    allowed=st.fixed_dictionaries({}, optional=ALLOWED),
    acked=st.integers(0, 4),
)
def test_allowed_changes_keep_the_session_and_fixed_ones_are_refused(
    fixed: list[str], allowed: dict[str, object], acked: int
) -> None:
    client = make_client(clean_start=False, inflight=4, username="u")
    broker = SansioBroker(client)
    broker.connect()
    client.subscribe([Subscription("s/#", QoS.AT_LEAST_ONCE)], now=0.0)
    for n in range(6):
        client.publish("t", bytes([n]), QoS.AT_LEAST_ONCE, now=0.0)
    broker.pump()
    for pid in range(1, acked + 1):
        broker.send(PubAck(pid + 1))  # id 1 is the SUBSCRIBE
    broker.pump()
    broker.drop()
    before = (client.inflight_count, client.waiting_count, client.export_session())
    original = client.config
    if fixed:
        with pytest.raises(InvalidOptionError) as info:
            client.reconfigure(replace(original, **allowed, **{k: CHANGED[k] for k in fixed}))
        for name in fixed:
            assert name in str(info.value)
        assert client.config is original
    else:
        client.reconfigure(replace(original, **allowed))
        assert client.config == replace(original, **allowed)
    assert (client.inflight_count, client.waiting_count, client.export_session()) == before
    # A session-loss reconnect restores the subscription and resends every unacked publish.
    client.connect(1.0)
    broker.expect(Connect)
    broker.send(ConnAck(session_present=False))
    sent = broker.pump()
    payloads = [p.payload for p in sent if isinstance(p, Publish)]
    assert payloads == [bytes([n]) for n in range(acked, min(6, acked + 4))]
    assert any(isinstance(p, Subscribe) for p in sent)
