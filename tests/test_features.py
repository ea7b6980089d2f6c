"""MQTT features end to end against mosquitto, for MQTT 3.1.1 and 5.0 where both apply."""

from __future__ import annotations

import pytest
import trio

from trio_mqtt import (
    Incoming,
    MqttOptions,
    Outgoing,
    Properties,
    ProtocolVersion,
    Publish,
    QoS,
    RetainHandling,
    Subscription,
    Will,
    open_mqtt_connection,
)
from trio_mqtt.testing import MosquittoBroker

VERSIONS = [ProtocolVersion.V311, ProtocolVersion.V5]
V5 = ProtocolVersion.V5


def opts(broker: MosquittoBroker, client_id: str, **kwargs: object) -> MqttOptions:
    return MqttOptions(client_id, broker.host, broker.port, **kwargs)  # type: ignore[arg-type]


async def next_message(conn: object, within: float = 5) -> Publish:
    with trio.fail_after(within):
        return await conn.messages().__anext__()  # type: ignore[attr-defined, no-any-return]


async def no_message(conn: object, wait: float = 0.3) -> None:
    with trio.move_on_after(wait):
        message = await conn.messages().__anext__()  # type: ignore[attr-defined]
        pytest.fail(f"unexpected message {message}")


@pytest.mark.parametrize("version", VERSIONS)
async def test_will_published_on_abrupt_close_only(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    class Crash(Exception):
        pass

    with trio.fail_after(15):
        async with open_mqtt_connection(opts(mosquitto, "watcher", protocol_version=version)) as w:
            await w.client.subscribe("wills/#", QoS.AT_LEAST_ONCE)
            will = Will("wills/a", b"gone", QoS.AT_LEAST_ONCE)
            # a clean exit sends DISCONNECT: no will
            async with open_mqtt_connection(
                opts(mosquitto, "a", will=will, protocol_version=version)
            ):
                pass
            await no_message(w)
            # an exception in the body closes without DISCONNECT: the will is published
            with pytest.raises(Crash):
                async with open_mqtt_connection(
                    opts(mosquitto, "a", will=will, protocol_version=version)
                ):
                    raise Crash
            message = await next_message(w)
            assert (message.topic, message.payload) == ("wills/a", b"gone")


@pytest.mark.parametrize("version", VERSIONS)
async def test_retained_messages_and_clearing_them(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    with trio.fail_after(15):
        async with open_mqtt_connection(opts(mosquitto, "retainer", protocol_version=version)) as c:
            tracker = await c.client.publish_tracked("ret/t", b"kept", qos=1, retain=True)
            await tracker.wait()
        async with open_mqtt_connection(opts(mosquitto, "late", protocol_version=version)) as c:
            await c.client.subscribe("ret/#", QoS.AT_LEAST_ONCE)
            message = await next_message(c)
            assert (message.payload, message.retain) == (b"kept", True)
            await (await c.client.publish_tracked("ret/t", b"", qos=1, retain=True)).wait()
        async with open_mqtt_connection(opts(mosquitto, "later", protocol_version=version)) as c:
            await c.client.subscribe("ret/#", QoS.AT_LEAST_ONCE)
            await no_message(c)


@pytest.mark.parametrize("version", VERSIONS)
async def test_offline_messages_queued_for_persistent_session(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    session: dict[str, object] = {"clean_start": False, "protocol_version": version}
    if version is V5:
        session["session_expiry_interval"] = 300
    with trio.fail_after(15):
        async with open_mqtt_connection(opts(mosquitto, "sleeper", **session)) as c:
            await c.client.subscribe("offline/#", QoS.EXACTLY_ONCE)
        async with open_mqtt_connection(opts(mosquitto, "sender", protocol_version=version)) as p:
            for i in range(3):
                await p.client.publish(f"offline/{i}", str(i), qos=QoS.EXACTLY_ONCE)
        async with open_mqtt_connection(opts(mosquitto, "sleeper", **session)) as c:
            payloads = [(await next_message(c)).payload for _ in range(3)]
            await no_message(c)
        assert payloads == [b"0", b"1", b"2"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_unsubscribe_overlap_and_dollar_topics(
    mosquitto: MosquittoBroker, version: ProtocolVersion
) -> None:
    with trio.fail_after(15):
        async with open_mqtt_connection(opts(mosquitto, "overlap", protocol_version=version)) as c:
            await c.client.subscribe_many([("ov/#", 1), ("ov/+/x", 1), ("#", 0)])
            await c.client.publish("ov/a/x", b"1", qos=1)
            first = await next_message(c)
            assert first.topic == "ov/a/x"
            # the broker may send one copy per matching subscription (3.1.1) or one in total
            extra = 0
            with trio.move_on_after(0.3):
                while True:
                    await c.messages().__anext__()
                    extra += 1
            assert extra <= 2
            result = await c.client.unsubscribe_many(["ov/#", "ov/+/x", "#"])
            if version is V5:
                assert result.reason_codes == (0, 0, 0)
            else:
                assert result.reason_codes == ()
            await c.client.publish("ov/a/x", b"2", qos=1)
            await no_message(c)
            # '#' does not match $-topics (MQTT-4.7.2-1), an explicit $ filter does
            await c.client.subscribe("#", QoS.AT_MOST_ONCE)
            await c.client.subscribe("$SYS/broker/uptime", QoS.AT_MOST_ONCE)
            message = await next_message(c)
            assert message.topic == "$SYS/broker/uptime"


async def test_v5_properties_round_trip(mosquitto: MosquittoBroker) -> None:
    props = Properties(
        content_type="application/json",
        response_topic="replies/1",
        correlation_data=b"corr",
        message_expiry_interval=60,
        payload_format_indicator=1,
        user_properties=(("a", "1"), ("b", "2")),
    )
    with trio.fail_after(10):
        async with open_mqtt_connection(opts(mosquitto, "props", protocol_version=V5)) as c:
            await c.client.subscribe("props/t", QoS.AT_LEAST_ONCE)
            await c.client.publish("props/t", b"{}", qos=1, properties=props)
            message = await next_message(c)
    got = message.properties
    assert got.content_type == "application/json"
    assert got.response_topic == "replies/1"
    assert got.correlation_data == b"corr"
    assert got.payload_format_indicator == 1
    assert got.user_properties == (("a", "1"), ("b", "2"))
    assert got.message_expiry_interval is not None
    assert 0 < got.message_expiry_interval <= 60


async def test_v5_subscription_options_and_identifier(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        async with open_mqtt_connection(opts(mosquitto, "opts", protocol_version=V5)) as c:
            await c.client.publish("so/ret", b"r", qos=1, retain=True)
            await c.client.subscribe_many(
                [Subscription("so/local", QoS.AT_LEAST_ONCE, no_local=True)]
            )
            await c.client.subscribe_many(
                [
                    Subscription(
                        "so/ret", QoS.AT_LEAST_ONCE, retain_handling=RetainHandling.DO_NOT_SEND
                    )
                ]
            )
            await c.client.subscribe_many(
                [Subscription("so/id", QoS.AT_LEAST_ONCE)],
                properties=Properties(subscription_identifiers=(42,)),
            )
            await c.client.publish("so/local", b"mine", qos=1)
            await no_message(c)  # no_local: our own message is not sent back; no retained copy
            await c.client.publish("so/id", b"x", qos=1)
            message = await next_message(c)
            assert message.properties.subscription_identifiers == (42,)


async def test_v5_message_expiry_drops_stale_queued_messages(mosquitto: MosquittoBroker) -> None:
    session = {"clean_start": False, "protocol_version": V5, "session_expiry_interval": 60}
    with trio.fail_after(15):
        async with open_mqtt_connection(opts(mosquitto, "expiring", **session)) as c:
            await c.client.subscribe("exp/#", QoS.AT_LEAST_ONCE)
        async with open_mqtt_connection(opts(mosquitto, "exp-pub", protocol_version=V5)) as p:
            short = Properties(message_expiry_interval=1)
            await p.client.publish("exp/short", b"stale", qos=1, properties=short)
            await p.client.publish("exp/long", b"fresh", qos=1)
        await trio.sleep(2.2)
        async with open_mqtt_connection(opts(mosquitto, "expiring", **session)) as c:
            message = await next_message(c)
            assert message.payload == b"fresh"
            await no_message(c)


async def test_v5_session_expiry_zero_forgets_the_session(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(10):
        gone = {"clean_start": False, "protocol_version": V5, "session_expiry_interval": 0}
        async with open_mqtt_connection(opts(mosquitto, "expiry0", **gone)) as c:
            await c.client.subscribe("e0/#", QoS.AT_LEAST_ONCE)
        async with open_mqtt_connection(opts(mosquitto, "expiry0", **gone)) as c:
            connack = c.connack
            assert connack is not None
            assert connack.session_present is False


async def test_v5_shared_subscription_splits_messages(mosquitto: MosquittoBroker) -> None:
    with trio.fail_after(15):
        async with (
            open_mqtt_connection(opts(mosquitto, "worker1", protocol_version=V5)) as w1,
            open_mqtt_connection(opts(mosquitto, "worker2", protocol_version=V5)) as w2,
            open_mqtt_connection(opts(mosquitto, "jobs", protocol_version=V5)) as p,
        ):
            await w1.client.subscribe("$share/workers/jobs/#", QoS.AT_LEAST_ONCE)
            await w2.client.subscribe("$share/workers/jobs/#", QoS.AT_LEAST_ONCE)
            for i in range(10):
                await p.client.publish(f"jobs/{i}", str(i), qos=1)
            got: dict[str, list[bytes]] = {"w1": [], "w2": []}

            async def drain(name: str, conn: object) -> None:
                with trio.move_on_after(1):
                    async for message in conn.messages():  # type: ignore[attr-defined]
                        got[name].append(message.payload)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, "w1", w1)
                nursery.start_soon(drain, "w2", w2)
    # each message went to exactly one worker, and both workers had a share
    assert sorted(got["w1"] + got["w2"]) == sorted(str(i).encode() for i in range(10))
    assert got["w1"]
    assert got["w2"]


async def test_v5_topic_aliases_both_ways(mosquitto_factory: object) -> None:
    broker = mosquitto_factory(extra_config=["max_topic_alias 10"])  # type: ignore[operator]
    with trio.fail_after(10):
        options = opts(
            broker,
            "aliases",
            protocol_version=V5,
            topic_alias_maximum=5,
            outgoing_topic_aliases=True,
        )
        async with open_mqtt_connection(options) as c:
            await c.client.subscribe("alias/long/topic/name", QoS.AT_LEAST_ONCE)
            for i in range(3):
                await c.client.publish("alias/long/topic/name", str(i), qos=1)
            sent: list[Publish] = []
            messages: list[Publish] = []
            while len(messages) < 3:
                event = await c.poll()
                if isinstance(event, (Incoming, Outgoing)) and isinstance(event.packet, Publish):
                    (messages if isinstance(event, Incoming) else sent).append(event.packet)
    # on the wire: the topic once with alias 1, then the alias alone
    assert [(p.topic, p.properties.topic_alias) for p in sent] == [
        ("alias/long/topic/name", 1),
        ("", 1),
        ("", 1),
    ]
    # the application sees full topics (mosquitto sends none of its own aliases)
    assert [m.topic for m in messages] == ["alias/long/topic/name"] * 3
    assert [m.payload for m in messages] == [b"0", b"1", b"2"]


async def test_v5_receive_maximum_from_broker_limits_window(mosquitto_factory: object) -> None:
    broker = mosquitto_factory(max_inflight_messages=2)  # type: ignore[operator]
    with trio.fail_after(10):
        async with open_mqtt_connection(opts(broker, "rm", protocol_version=V5)) as c:
            await c.client.subscribe("rm/t", QoS.AT_LEAST_ONCE)
            assert c.statistics().window == 2
            for i in range(20):
                await c.client.publish("rm/t", str(i), qos=1)
            payloads = [(await next_message(c)).payload for _ in range(20)]
    assert payloads == [str(i).encode() for i in range(20)]


def test_topic_matches_is_public_and_checks_its_arguments() -> None:
    import pytest

    from trio_mqtt import InvalidTopicError, Publish, topic_matches

    assert topic_matches("a/b/c", "a/+/c")
    assert topic_matches("a", "a/#")
    assert not topic_matches("$SYS/x", "#")
    assert topic_matches("a/b", "$share/g/a/+")
    assert Publish("a/b").matches("a/#")
    assert not Publish("a/b").matches("a")
    with pytest.raises(InvalidTopicError):
        topic_matches("a/+", "a/+")
    with pytest.raises(InvalidTopicError):
        topic_matches("a/b", "a/#/b")
    with pytest.raises(TypeError):
        topic_matches(b"a", "a")  # type: ignore[arg-type]
