"""Helpers for tests whose clients talk to a private broker from the fixtures."""

from __future__ import annotations

import trio

from trio_mqtt import MqttConnection, MqttOptions
from trio_mqtt.testing import EmbeddedBroker, MosquittoBroker


def options_for(
    broker: MosquittoBroker | EmbeddedBroker, client_id: str, **kwargs: object
) -> MqttOptions:
    """Options for a client of ``broker`` called ``client_id`` (``kwargs``: other options)."""
    return MqttOptions(client_id, broker.host, broker.port, **kwargs)  # type: ignore[arg-type]


async def wait_received(conn: MqttConnection, count: int) -> None:
    """Wait until ``count`` PUBLISH packets arrived on ``conn`` (buffered as decoded)."""
    while conn.statistics().publishes_received < count:  # noqa: ASYNC110 - a counter, no event
        await trio.sleep(0.005)
