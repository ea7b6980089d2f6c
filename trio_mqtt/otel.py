"""OpenTelemetry for trio-mqtt: trace context across the broker, spans, and metrics.

Needs the ``otel`` extra (``pip install 'trio-mqtt[otel]'``, which brings
``opentelemetry-api``); ``import trio_mqtt`` never imports this module or OpenTelemetry, so a
program that does not use it pays nothing.

Theory of operation. :class:`MqttTelemetry` is explicit instrumentation, not a patch of the
client: the publish and receive paths stay as fast as they are without it.

* :meth:`MqttTelemetry.publish` starts a ``send`` span (kind PRODUCER), writes the span's W3C
  trace context (``traceparent``, and ``tracestate`` when there is one) into the message's
  MQTT 5 user properties, publishes with a tracker and ends the span when the broker has the
  message (QoS 0 written, PUBACK, PUBCOMP), with the reason code. :meth:`~MqttTelemetry.inject`
  does the writing alone, for any publish.
* On the receiving side :meth:`MqttTelemetry.processing` (a context manager) and
  :meth:`MqttTelemetry.traced` (a handler wrapper, for ``MessageStream.handle``) run the code
  that handles a message in a ``process`` span (kind CONSUMER) whose parent is the context
  extracted from the message, so both ends share one trace id.
* :meth:`MqttTelemetry.observe` exports a connection's :meth:`statistics()
  <trio_mqtt.MqttConnection.statistics>` as observable instruments, read when the meter
  provider collects: the totals as counters, the levels (window, inflight, queues) as gauges.

MQTT 3.1.1 has no user properties: spans and metrics still work, but the context does not
travel (the codec leaves MQTT 5 properties out of a 3.1.1 packet).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

try:
    from opentelemetry import context as otel_context, metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("trio_mqtt.otel needs OpenTelemetry: pip install 'trio-mqtt[otel]'") from exc

from ._client import Client, Payload
from ._connection import MqttConnection
from ._core._packets import NO_PROPERTIES, Properties, Publish
from ._requests import PublishResult
from ._statistics import ConnectionStatistics

__all__ = ["GAUGES", "MqttTelemetry"]

INSTRUMENTATION_NAME = "trio_mqtt"
#: statistics fields exported as gauges (levels); every other numeric field is a counter
GAUGES = frozenset(
    {
        "connected",
        "window",
        "inflight",
        "waiting_publishes",
        "queued_requests",
        "buffered_events",
        "held_acks",
    }
)
_UNITS = {"bytes_sent": "By", "bytes_received": "By", "throttled_time": "s"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trio-mqtt")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0"


class MqttTelemetry:
    """Traces and metrics for trio-mqtt connections.

    Args:
        tracer_provider: where spans go; by default the global one
            (:func:`opentelemetry.trace.set_tracer_provider`).
        meter_provider: where metrics go; by default the global one.
        propagator: how the context is written into and read from user properties; by
            default W3C Trace Context (``traceparent``/``tracestate``).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, _version(), tracer_provider)
        self._meter = metrics.get_meter(INSTRUMENTATION_NAME, _version(), meter_provider)
        self._propagator = propagator or TraceContextTextMapPropagator()
        self._observed: dict[int, MqttConnection] = {}
        self._instruments_made = False

    # ------------------------------------------------------------------ context on the wire
    def inject(self, properties: Properties | None = None) -> Properties:
        """``properties`` (or none) with the current trace context added as user properties.

        User properties with the propagator's names (``traceparent``, ``tracestate``) that
        were there are replaced; the others are kept, in order.
        """
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        base = properties or NO_PROPERTIES
        if not carrier:
            return base
        kept = tuple(pair for pair in base.user_properties if pair[0] not in carrier)
        return dataclasses.replace(base, user_properties=kept + tuple(carrier.items()))

    def extract(self, message: Publish) -> otel_context.Context:
        """The trace context a message carries (an empty context when it carries none)."""
        carrier = {name: value for name, value in message.properties.user_properties}
        return self._propagator.extract(carrier)

    # ------------------------------------------------------------------ spans
    async def publish(
        self,
        client: Client,
        topic: str,
        payload: Payload = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> PublishResult:
        """Publish in a ``send`` span that lasts until the broker has the message.

        Takes the arguments of :meth:`Client.publish <trio_mqtt.Client.publish>` and returns
        the broker's answer as :meth:`Tracker.wait <trio_mqtt.Tracker.wait>` does. A refusal
        (reason code 0x80 or above) sets the span's status to error; an exception is recorded
        on the span and raised.
        """
        attributes: dict[str, str | int] = {
            "messaging.system": "mqtt",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.mqtt.qos": int(qos),
        }
        with self._tracer.start_as_current_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            tracker = await client.publish_tracked(
                topic, payload, qos, retain, properties=self.inject(properties)
            )
            result = await tracker.wait()
            span.set_attribute("messaging.mqtt.reason_code", result.reason_code)
            if result.packet_id:
                span.set_attribute("messaging.message.id", str(result.packet_id))
            if not result.is_success:
                span.set_status(Status(StatusCode.ERROR, f"refused: 0x{result.reason_code:02X}"))
            return result

    @contextmanager
    def processing(self, message: Publish) -> Iterator[Span]:
        """Run a block in a ``process`` span, child of the context ``message`` carries.

        An exception leaving the block is recorded on the span (status error) and goes on.
        """
        attributes: dict[str, str | int] = {
            "messaging.system": "mqtt",
            "messaging.operation.type": "process",
            "messaging.destination.name": message.topic,
            "messaging.mqtt.qos": int(message.qos),
        }
        if message.packet_id:
            attributes["messaging.message.id"] = str(message.packet_id)
        with self._tracer.start_as_current_span(
            f"process {message.topic}",
            context=self.extract(message),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            yield span

    def traced(
        self, handler: Callable[[Publish], Awaitable[object]]
    ) -> Callable[[Publish], Awaitable[None]]:
        """``handler`` wrapped so that each call runs in :meth:`processing`'s span.

        Made for :meth:`MessageStream.handle <trio_mqtt.MessageStream.handle>`:
        ``await stream.handle(telemetry.traced(handler), workers=8)``.
        """

        async def traced_handler(message: Publish) -> None:
            with self.processing(message):
                await handler(message)

        return traced_handler

    # ------------------------------------------------------------------ metrics
    @contextmanager
    def observe(self, connection: MqttConnection) -> Iterator[None]:
        """Export ``connection.statistics()`` as metrics while the block runs.

        Each counter is named ``trio_mqtt.<field>`` (the fields of
        :class:`~trio_mqtt.ConnectionStatistics`) with the attribute ``mqtt.client_id``.
        Fields in :data:`GAUGES` are observable gauges, the others observable counters.
        """
        self._make_instruments()
        self._observed[id(connection)] = connection
        try:
            yield
        finally:
            self._observed.pop(id(connection), None)

    def _make_instruments(self) -> None:
        if self._instruments_made:
            return
        self._instruments_made = True
        for field in dataclasses.fields(ConnectionStatistics):
            name = f"{INSTRUMENTATION_NAME}.{field.name}"
            callback = self._reader(field.name)
            unit = _UNITS.get(field.name, "1")
            if field.name in GAUGES:
                self._meter.create_observable_gauge(name, [callback], unit)
            else:
                self._meter.create_observable_counter(name, [callback], unit)

    def _reader(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def read(options: CallbackOptions) -> Iterable[Observation]:
            for connection in list(self._observed.values()):
                value = getattr(connection.statistics(), field)
                attributes = {"mqtt.client_id": connection.options.client_id}
                yield Observation(int(value), attributes)

        return read
