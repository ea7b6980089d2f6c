"""The async examples run against private mosquitto brokers and print what they promise.

Each example runs as a subprocess, exactly as a reader would run it (``python examples/x.py
URL``), with warnings turned into errors, and must exit 0 within the timeout with nothing on
stderr. The assertions check the payloads and outcomes each example prints, so an example that
stops working (or stops showing what its docstring says) fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

import trio_mqtt
from trio_mqtt import MqttOptions, Publish, QoS, Will, open_mqtt_connection
from trio_mqtt.testing import MosquittoBroker
from trio_mqtt.testing._faults import open_fault_proxy
from trio_mqtt.testing._plugin import BrokerFactory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PACKAGE_ROOT = str(Path(trio_mqtt.__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": PACKAGE_ROOT, "PYTHONUNBUFFERED": "1"}
TIMEOUT = 30


def command(name: str, *args: str) -> list[str]:
    return [sys.executable, "-W", "error", str(EXAMPLES / name), *args]


def run_example(
    name: str, *args: str, env: dict[str, str] | None = None, returncode: int = 0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command(name, *args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**ENV, **(env or {})},
    )
    assert result.returncode == returncode, result.stderr
    return result


def output(name: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    result = run_example(name, *args, env=env)
    assert result.stderr == ""
    return result.stdout.splitlines()


TESTED = {
    "async_pubsub.py",
    "embedded_broker.py",
    "high_rate.py",
    "manual_acks.py",
    "ordered_handlers.py",
    "otel_tracing.py",
    "reconnect.py",
    "request_response.py",
    "routes.py",
    "subscription_ids.py",
    "tls.py",
    "token_refresh.py",
    "topic_alias.py",
    "tracked_publish.py",
    "websocket.py",
}


def test_every_async_example_has_a_test_and_a_docs_section() -> None:
    found = {path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("sync_")}
    assert found == TESTED
    page = (ROOT / "docs" / "examples.rst").read_text(encoding="utf-8")
    for name in sorted(found):
        assert f".. literalinclude:: ../examples/{name}\n" in page, name


def test_async_pubsub(mosquitto: MosquittoBroker) -> None:
    lines = output("async_pubsub.py", mosquitto.url)
    assert lines[0] == "subscribed to trio-mqtt/examples/async-pubsub/# (granted QoS 2)"
    assert lines[-1] == "disconnected after 3 messages"
    # publisher and reader are separate tasks: their lines may interleave
    assert sorted(line for line in lines if line.startswith("received")) == [
        f"received trio-mqtt/examples/async-pubsub/qos{q} (QoS {q}): hello at QoS {q}"
        for q in range(3)
    ]
    assert [line for line in lines if line.startswith("published")] == [
        f"published at QoS {q}" for q in range(3)
    ]


def test_async_pubsub_takes_the_url_from_the_environment(mosquitto: MosquittoBroker) -> None:
    lines = output("async_pubsub.py", env={"MQTT_URL": mosquitto.url})
    assert lines[-1] == "disconnected after 3 messages"


def test_embedded_broker_needs_no_broker_at_all() -> None:
    lines = output("embedded_broker.py")
    assert lines[0].startswith("broker listening on mqtt://127.0.0.1:")
    assert lines[1:] == [
        "dashboard may not write: reason code 0x87",
        "dashboard got sensors/kitchen = 21.5",
        "dashboard got sensors/kitchen = 21.7",
        "broker: 3 messages in, 2 out",
    ]


def test_routes(mosquitto: MosquittoBroker) -> None:
    lines = output("routes.py", mosquitto.url)
    assert [line for line in lines if line.startswith("temperature")] == [
        "temperature task: kitchen 21.5",
        "temperature task: cellar 12.0",
    ]
    assert [line for line in lines if line.startswith("humidity")] == [
        "humidity task: kitchen 40",
        "humidity task: cellar 75",
    ]
    assert [line for line in lines if line.startswith("unrouted")] == ["unrouted: cellar/pressure"]
    assert lines[-1] == "done"
    assert len(lines) == 6


def test_ordered_handlers(mosquitto: MosquittoBroker) -> None:
    assert output("ordered_handlers.py", mosquitto.url) == [
        "order bob/3 failed: card declined",
        "alice: orders [1, 2, 3, 4]",
        "bob: orders [1, 2, 3, 4]",
        "carol: orders [1, 2, 3, 4]",
        "at most 3 orders at once (one per customer)",
    ]


def test_otel_tracing_shows_one_trace_across_the_broker(mosquitto: MosquittoBroker) -> None:
    assert output("otel_tracing.py", mosquitto.url) == [
        "checkout [internal]",
        "  send trio-mqtt/examples/otel/orders [producer]",
        "    process trio-mqtt/examples/otel/orders [consumer]",
        "      reserve stock [internal]",
        "4 spans, 1 trace",
        "trio_mqtt.connected = 1",
        "trio_mqtt.publishes_sent = 1",
    ]


def test_tracked_publish_reports_reason_codes(
    mosquitto_factory: BrokerFactory, tmp_path: Path
) -> None:
    # An ACL that allows the example's own topics only, so the "restricted" publish is refused.
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite trio-mqtt/examples/tracked/#\n", encoding="utf-8")
    broker = mosquitto_factory(extra_config=[f"acl_file {acl}"])
    lines = output("tracked_publish.py", broker.url)
    assert lines == [
        "before subscribing, QoS 1: packet 1: NO_MATCHING_SUBSCRIBERS (0x10), accepted",
        "subscribed, QoS 0: packet 0: SUCCESS (0x00), accepted",
        "subscribed, QoS 1: packet 3: SUCCESS (0x00), accepted",
        "subscribed, QoS 2: packet 4: SUCCESS (0x00), accepted",
        "restricted topic, QoS 1: packet 5: NOT_AUTHORIZED (0x87), refused",
        "batch of 10 QoS 1 publishes: 10 accepted",
        "done",
    ]


def test_manual_acks_redelivers_until_acked(mosquitto: MosquittoBroker) -> None:
    lines = output("manual_acks.py", mosquitto.url)
    assert lines == [
        "connection 1: new session",
        *(f"  received job {n} (dup=False), not acking" for n in range(3)),
        "connection 2: resumed session",
        *(f"  redelivered job {n} (dup=True), acked" for n in range(3)),
        "connection 3: resumed session",
        "  nothing redelivered within 0.5 s",
    ]


def test_tls_with_the_brokers_ca(mosquitto_factory: BrokerFactory) -> None:
    broker = mosquitto_factory(tls=True)
    lines = output("tls.py", broker.tls_url, "--cafile", str(broker.ca_pem_path))
    assert lines == [
        f"connected to 127.0.0.1:{broker.tls_port} over TLS",
        "received trio-mqtt/examples/tls: sent encrypted",
        "done",
    ]
    # Without the CA file the system store cannot vouch for the test CA.
    refused = run_example("tls.py", broker.tls_url, returncode=1)
    assert refused.stdout == ""
    assert refused.stderr.startswith("certificate verification failed:")


def test_websocket(mosquitto_factory: BrokerFactory) -> None:
    broker = mosquitto_factory(websockets=True)
    lines = output("websocket.py", broker.ws_url)
    assert lines == [
        "connecting over WebSocket, path /",
        *(f"received trio-mqtt/examples/websocket: frame {n}" for n in range(3)),
        # CONNECT, SUBSCRIBE, 3 PUBLISH, 3 PUBACK / CONNACK, SUBACK, 3 PUBACK, 3 PUBLISH
        "8 packets sent, 8 received",
        "done",
    ]


def test_topic_alias(mosquitto_factory: BrokerFactory) -> None:
    broker = mosquitto_factory(extra_config=["max_topic_alias 2"])
    lines = output("topic_alias.py", broker.url)
    topic = "trio-mqtt/examples/topic-alias/building-7/floor-3/room-12/sensor-4/temperature"
    assert lines[0] == "the broker accepts 2 topic aliases from us"
    assert [line for line in lines if line.startswith("sent")] == [
        "sent PUBLISH: topic 78 chars, alias 1, 92 bytes",
        "sent PUBLISH: empty topic, alias 1, 14 bytes",
        "sent PUBLISH: empty topic, alias 1, 14 bytes",
    ]
    assert [line for line in lines if line.startswith("received")] == [
        f"received {value} on {topic}" for value in ("20.5", "21.5", "22.5")
    ]
    assert lines[-1] == "done"


def test_subscription_ids(mosquitto: MosquittoBroker) -> None:
    lines = output("subscription_ids.py", mosquitto.url)
    assert sorted(lines[:-1]) == [
        "[1 all readings] kitchen/humidity = 45",
        "[1 all readings] kitchen/temp = 27.0",
        "[2 temperatures] kitchen/temp: too warm",
    ]
    assert lines[-1] == "done"


def test_request_response(mosquitto: MosquittoBroker) -> None:
    lines = output("request_response.py", mosquitto.url)
    assert [line for line in lines if line.startswith("responder")] == [
        "responder: 2 + 3 for b'req-1'",
        "responder: 40 + 2 for b'req-2'",
        "responder: -1 + 1 for b'req-3'",
    ]
    assert sorted(line for line in lines if line.startswith("requester")) == [
        "requester: -1 1 -> 0",
        "requester: 2 3 -> 5",
        "requester: 40 2 -> 42",
    ]
    assert lines[-1] == "done"
    assert len(lines) == 7


async def output_across_restart(
    mosquitto: MosquittoBroker, argv: list[str], marker: bytes
) -> list[str]:
    """Run an example, restart ``mosquitto`` once its output shows ``marker``, and return
    its output lines once it exited with status 0 and nothing on standard error."""
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
        )
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            seen = b""
            while marker not in seen:
                chunk = await process.stdout.receive_some()
                assert chunk, seen.decode()
                seen += chunk
            await trio.to_thread.run_sync(mosquitto.restart)
            while chunk := await process.stdout.receive_some():
                seen += chunk
            errors = b""
            while chunk := await process.stderr.receive_some():
                errors += chunk
            assert await process.wait() == 0, errors.decode()
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:  # failed or timed out: never leave it running
                    process.kill()
                    await process.wait()
                for pipe in (process.stdout, process.stderr):
                    if pipe is not None:
                        await pipe.aclose()
    assert errors == b""
    lines = seen.decode().splitlines()
    return lines


async def test_reconnect_survives_a_broker_restart(mosquitto: MosquittoBroker) -> None:
    # the broker restarts once the example has received a heartbeat
    argv = command("reconnect.py", mosquitto.url, "--seconds", "3")
    lines = await output_across_restart(mosquitto, argv, b"received beat 1\n")
    assert lines[:2] == ["connected (session present: False)", "received beat 1"]
    assert lines[-1] == "done after 2 connection(s)"
    lost = next(i for i, line in enumerate(lines) if line.startswith("disconnected: "))
    assert lines[lost + 1].startswith("reconnecting: attempt 1 in ")
    back = lines.index("connected (session present: False)", lost)
    assert all(line.startswith("reconnecting: attempt ") for line in lines[lost + 1 : back])
    # The subscription was restored: heartbeats arrive again after the reconnect.
    assert any(line.startswith("received beat") for line in lines[back + 1 :]), lines


# --------------------------------------------------------------------------------------------
# Found while writing manual_acks.py (fails today; see the report to the lead). Leaving
# ``open_mqtt_connection`` gracefully writes DISCONNECT and closes the socket at once, without
# waiting for the broker to have read it. When the same client id connects again right away
# (a restarted service, or step 3 of manual_acks.py), the broker can take the session over
# before it has read the old connection's last packets: their acks and the DISCONNECT are lost,
# and the will of a client that said goodbye is published (MQTT-3.14.4-3 says DISCONNECT
# discards it). On loopback mosquitto this happened in about 1 of 8 runs of manual_acks.py;
# a little latency on the old connection makes it certain. Suggested fix: after flushing
# DISCONNECT, half-close and wait (bounded) for the broker to close its end.


async def test_graceful_exit_is_read_by_the_broker_before_an_immediate_reconnect(
    mosquitto: MosquittoBroker,
) -> None:
    will = Will("race/will", b"should not be sent", QoS.AT_LEAST_ONCE)
    wills: list[Publish] = []
    with trio.fail_after(10):
        watcher_options = MqttOptions("race-watcher", mosquitto.host, mosquitto.port)
        async with (
            open_mqtt_connection(watcher_options) as watcher,
            open_fault_proxy(mosquitto.host, mosquitto.port) as proxy,
        ):
            await watcher.client.subscribe("race/will", QoS.AT_LEAST_ONCE)
            slow = MqttOptions("racer", proxy.host, proxy.port, will=will)
            async with open_mqtt_connection(slow):
                proxy.delay = 0.2  # the last packets take a while to reach the broker
            # The exit above was graceful. Now the same client id connects again, directly.
            direct = MqttOptions("racer", mosquitto.host, mosquitto.port, will=will)
            async with open_mqtt_connection(direct):
                pass
            # A will would come within moments; none must come at all.
            with trio.move_on_after(0.6):
                async for message in watcher.messages():
                    wills.append(message)
    assert wills == []


def test_high_rate_delivers_everything_in_order_in_batches(mosquitto: MosquittoBroker) -> None:
    lines = output("high_rate.py", mosquitto.url, "3000")
    assert lines[0] == "received 3000 of 3000 messages, in order: True"
    batches = int(lines[1].split()[0])
    assert 1 <= batches < 3000  # several messages per checkpoint
    assert lines[2].endswith("messages per second (QoS 1, one process for both ends)")


async def test_token_refresh_skips_a_dead_server_and_presents_a_new_token(
    mosquitto: MosquittoBroker,
) -> None:
    argv = command("token_refresh.py", "mqtt://127.0.0.1:1", mosquitto.url)
    # once a reading arrived, the restart makes a new connection (and token) necessary
    lines = await output_across_restart(mosquitto, argv, b"received reading 1")
    port = mosquitto.port
    assert lines[:3] == [
        "trying 127.0.0.1:1 with token-1",
        f"trying 127.0.0.1:{port} with token-2",
        "received reading 1 (connected with token-2)",
    ]
    # after the restart: the same server first, each attempt with a new token
    tries = [line for line in lines[3:] if line.startswith("trying")]
    assert tries
    assert all(line.startswith(f"trying 127.0.0.1:{port} with token-") for line in tries)
    last = int(tries[-1].rsplit("-", 1)[1])
    assert lines[-1] == f"received reading 2 (connected with token-{last})"
