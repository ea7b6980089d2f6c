"""Bugs found in the async core while building ``trio_mqtt.sync`` (reported to the lead).

Each test here fails until the bug it names is fixed in a file the sync API does not own.
"""

from __future__ import annotations

import trio

from trio_mqtt import MqttOptions, QoS, open_mqtt_connection
from trio_mqtt.testing import MosquittoBroker


async def test_two_tasks_polling_at_once_share_events_without_crashing(
    mosquitto: MosquittoBroker,
) -> None:
    # _dispatch._Buffer._get checks ``self.items`` and then checkpoints before ``popleft()``:
    # two tasks woken by the same event both pass the check, and the second pops an empty
    # deque (IndexError) instead of waiting for the next event.
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
