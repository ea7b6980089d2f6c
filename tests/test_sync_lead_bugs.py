"""Regression tests for bugs in the async core found while building ``trio_mqtt.sync``.

The sync API lets several threads read one connection, which is how these showed up.
"""

from __future__ import annotations

import trio

from trio_mqtt import MqttOptions, QoS, open_mqtt_connection
from trio_mqtt.testing import MosquittoBroker


async def test_two_tasks_polling_at_once_share_events_without_crashing(
    mosquitto: MosquittoBroker,
) -> None:
    # _dispatch._Buffer._get used to check ``self.items`` and then checkpoint before
    # ``popleft()``: two tasks woken by the same event both passed the check, and the second
    # popped an empty deque (IndexError) instead of waiting for the next event.
    received: list[object] = []
    with trio.fail_after(10):
        options = MqttOptions("two-pollers", mosquitto.host, mosquitto.port)
        async with open_mqtt_connection(options) as conn:
            await conn.client.subscribe("two/pollers", QoS.AT_MOST_ONCE)
            while conn.statistics().buffered_events:
                await conn.poll()

            async def reader() -> None:
                received.append(await conn.poll())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                await conn.client.publish("two/pollers", b"x")
    assert len(received) == 2
