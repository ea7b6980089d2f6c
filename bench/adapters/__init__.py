"""One adapter module per MQTT client, all with the same two entry points.

Every adapter module defines:

* ``NAME``: the label used in the report,
* ``version() -> str``: the installed version of the library (raises
  :class:`bench.common.Unavailable` when it is missing),
* ``run_throughput(job: Job) -> dict``: one publisher connection and one subscriber
  connection move ``job.count`` messages of ``job.size`` bytes at ``job.qos``,
* ``run_latency(job: Job) -> dict``: one connection publishes a message and waits for its
  own copy before publishing the next.

Adapters are imported only inside the worker subprocess, so a broken library cannot
disturb the measurements of the others.
"""

from __future__ import annotations

#: Report order and the module that measures each client.
ADAPTERS: dict[str, str] = {
    "raw-socket": "bench.adapters.raw_adapter",
    "trio-mqtt": "bench.adapters.trio_mqtt_adapter",
    "trio-mqtt-await": "bench.adapters.trio_mqtt_adapter",
    "paho-mqtt": "bench.adapters.paho_adapter",
    "gmqtt": "bench.adapters.gmqtt_adapter",
    "aiomqtt": "bench.adapters.aiomqtt_adapter",
    "amqtt": "bench.adapters.amqtt_adapter",
    "mqttium": "bench.adapters.mqttium_adapter",
    "zmqtt": "bench.adapters.zmqtt_adapter",
    "moat-lib-mqtt": "bench.adapters.moat_adapter",
    "trio-mqtt-v5": "bench.adapters.trio_mqtt_adapter",
    "trio-mqtt-w1000": "bench.adapters.trio_mqtt_adapter",
}

#: Measured only when named with ``--clients`` (not part of the default run).
EXTRAS: tuple[str, ...] = ("trio-mqtt-v5", "trio-mqtt-w1000")

#: Clients that are neither the raw-socket ceiling nor trio-mqtt itself.
PEERS: tuple[str, ...] = tuple(
    n for n in ADAPTERS if n not in ("raw-socket", "trio-mqtt", "trio-mqtt-await", *EXTRAS)
)
