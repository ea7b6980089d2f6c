"""trio_mqtt.otel against mosquitto, with the OpenTelemetry SDK's in-memory exporters: one trace
across the broker (MQTT 5), spans until the ack and around handling, statistics as metrics,
and nothing of OpenTelemetry loaded by ``import trio_mqtt``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import trio
from broker_clients import options_for
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from trio_mqtt import (
    ConnectionStatistics,
    Properties,
    ProtocolVersion,
    Publish,
    QoS,
    open_mqtt_connection,
)
from trio_mqtt.otel import GAUGES, MqttTelemetry
from trio_mqtt.testing import MosquittoBroker


def tracing() -> tuple[MqttTelemetry, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return MqttTelemetry(tracer_provider=provider), exporter, provider


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_import_trio_mqtt_loads_no_opentelemetry() -> None:
    code = (
        "import sys, trio_mqtt, trio_mqtt.sync, trio_mqtt.testing; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_without_the_extra_the_import_error_names_it() -> None:
    # OpenTelemetry made unimportable, as in an installation without the extra
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ImportError(f'no {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import trio_mqtt\n"
        "try:\n"
        "    import trio_mqtt.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'trio-mqtt[otel]'" in result.stdout


async def test_one_trace_from_publisher_to_handler(mosquitto: MosquittoBroker) -> None:
    telemetry, exporter, provider = tracing()
    tracer = provider.get_tracer("test")
    received: list[Publish] = []
    handled = trio.Event()

    async def handler(message: Publish) -> None:
        with tracer.start_as_current_span("store it"):
            received.append(message)
        handled.set()

    v5 = {"protocol_version": ProtocolVersion.V5}
    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "otel-sub", **v5)) as sub,
            open_mqtt_connection(options_for(mosquitto, "otel-pub", **v5)) as pub,
            sub.route("otel/#", qos=QoS.AT_LEAST_ONCE) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(telemetry.traced(handler)))
            with tracer.start_as_current_span("job"):
                result = await telemetry.publish(
                    pub.client,
                    "otel/orders",
                    b"1",
                    qos=QoS.AT_LEAST_ONCE,
                    properties=Properties(user_properties=(("origin", "test"),)),
                )
            await handled.wait()
            nursery.cancel_scope.cancel()
    assert result.is_success
    spans = by_name(exporter.get_finished_spans())
    job, send, process, store = (
        spans[name] for name in ("job", "send otel/orders", "process otel/orders", "store it")
    )
    trace_id = job.context.trace_id
    # one trace: job -> send (publisher) -> process (subscriber) -> the handler's own span
    assert {s.context.trace_id for s in (send, process, store)} == {trace_id}
    assert send.parent is not None
    assert send.parent.span_id == job.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.parent.is_remote
    assert store.parent is not None
    assert store.parent.span_id == process.context.span_id
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert send.attributes is not None
    assert send.attributes["messaging.mqtt.reason_code"] == 0
    assert send.attributes["messaging.destination.name"] == "otel/orders"
    # the span lasted until the PUBACK: it ended after it started, around the round trip
    assert send.end_time is not None
    assert send.start_time is not None
    assert send.end_time > send.start_time
    # the context travelled in user properties, next to the application's own
    names = [name for name, _ in received[0].properties.user_properties]
    assert names == ["origin", "traceparent"]


async def test_mqtt311_has_spans_but_no_propagation(mosquitto: MosquittoBroker) -> None:
    telemetry, exporter, _ = tracing()
    handled = trio.Event()

    async def handler(message: Publish) -> None:
        handled.set()

    with trio.fail_after(10):
        async with (
            open_mqtt_connection(options_for(mosquitto, "otel-311")) as conn,
            conn.route("otel311/#", qos=QoS.AT_LEAST_ONCE) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: stream.handle(telemetry.traced(handler)))
            await telemetry.publish(conn.client, "otel311/x", b"", qos=QoS.EXACTLY_ONCE)
            await handled.wait()
            nursery.cancel_scope.cancel()
    spans = by_name(exporter.get_finished_spans())
    send, process = spans["send otel311/x"], spans["process otel311/x"]
    assert process.parent is None  # a new trace: 3.1.1 carries no user properties
    assert process.context.trace_id != send.context.trace_id


async def test_a_failing_handler_is_recorded_on_its_span(mosquitto: MosquittoBroker) -> None:
    telemetry, exporter, _ = tracing()

    async def handler(message: Publish) -> None:
        raise ValueError("bad payload")

    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "otel-error")) as conn:
            with pytest.raises(ValueError, match="bad payload"):
                async with conn.route("otelerr", qos=QoS.AT_LEAST_ONCE) as stream:
                    await conn.client.publish("otelerr", b"x", qos=QoS.AT_LEAST_ONCE)
                    await stream.handle(telemetry.traced(handler))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


async def test_statistics_are_exported_as_metrics(mosquitto: MosquittoBroker) -> None:
    reader = InMemoryMetricReader()
    telemetry = MqttTelemetry(meter_provider=MeterProvider(metric_readers=[reader]))

    def points() -> dict[str, dict[str, int]]:
        data = reader.get_metrics_data()
        found: dict[str, dict[str, int]] = {}
        if data is None:  # nothing observed
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        client = str(point.attributes["mqtt.client_id"])  # type: ignore[index]
                        found.setdefault(metric.name, {})[client] = int(point.value)  # type: ignore[union-attr]
        return found

    with trio.fail_after(10):
        async with open_mqtt_connection(options_for(mosquitto, "otel-metrics")) as conn:
            with telemetry.observe(conn):
                for n in range(5):
                    await (await conn.client.publish_tracked("m", str(n), qos=1)).wait()
                seen = points()
                stats = conn.statistics()
            after = points()
    assert seen["trio_mqtt.publishes_sent"] == {"otel-metrics": stats.publishes_sent}
    assert stats.publishes_sent >= 5
    assert seen["trio_mqtt.bytes_sent"]["otel-metrics"] == stats.bytes_sent
    assert seen["trio_mqtt.connected"] == {"otel-metrics": 1}
    assert seen["trio_mqtt.inflight"] == {"otel-metrics": 0}
    # one instrument per statistics field
    assert set(seen) == {f"trio_mqtt.{f.name}" for f in dataclasses.fields(ConnectionStatistics)}
    # left the block: the connection is no longer observed
    assert "otel-metrics" not in after.get("trio_mqtt.publishes_sent", {})


def test_every_statistics_field_is_classified_as_a_gauge_or_a_counter() -> None:
    # a new statistics field must be put on one side on purpose: a level exported as a
    # monotonic counter would be summed into nonsense by a metrics backend
    counters = {
        "dropped_events",
        "connects",
        "packets_sent",
        "packets_received",
        "publishes_sent",
        "publishes_received",
        "retransmissions",
        "duplicates_suppressed",
        "pings_sent",
        "sessions_lost",
        "stray_acks",
        "bytes_sent",
        "bytes_received",
        "throttled_time",
        "publishes_expired",
        "publishes_dropped_oldest",
    }
    fields = {f.name for f in dataclasses.fields(ConnectionStatistics)}
    assert GAUGES | counters == fields
    assert not GAUGES & counters


def test_inject_replaces_an_old_context_and_keeps_other_properties() -> None:
    telemetry, _, provider = tracing()
    old = Properties(
        user_properties=(("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"), ("a", "b"))
    )
    with provider.get_tracer("test").start_as_current_span("now") as span:
        props = telemetry.inject(old)
    traceparent = dict(props.user_properties)["traceparent"]
    assert traceparent.split("-")[1] == f"{span.get_span_context().trace_id:032x}"
    assert [name for name, _ in props.user_properties] == ["a", "traceparent"]
    # outside any span there is nothing to carry: the properties stay as they were
    assert telemetry.inject(old) is old
    assert telemetry.inject() == Properties()
