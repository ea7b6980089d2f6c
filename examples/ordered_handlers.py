"""Ordered concurrent handlers: slow work on several messages at once, in order per customer.

Usage::

    python examples/ordered_handlers.py [mqtt://HOST:PORT]     # or set MQTT_URL

Orders arrive on ``shop/orders/<customer>``. Charging one takes 0.1 s (a stand-in for a call
to a payment service), so handling them one by one would take 1.2 s for the twelve below.
``stream.handle(charge, workers=4)`` charges up to four at once, and because the ordering key
is the topic (the default), one customer's orders are still charged one after the other, in
the order they arrived: the three customers run in parallel and the whole run takes about
0.4 s.

With ``manual_acks=True`` each order is acknowledged only after ``charge()`` returned, so an
order whose charge never finished (the process died) comes again when the session resumes.
An order that fails is reported by the ``on_error`` callback and counts as handled.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict

import trio

from trio_mqtt import MqttOptions, Publish, QoS, open_mqtt_connection

PREFIX = "trio-mqtt/examples/ordered/shop/orders"
CUSTOMERS = ("alice", "bob", "carol")
ORDERS = 4  # per customer


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


async def main() -> None:
    charged: dict[str, list[int]] = defaultdict(list)
    running = 0
    most_running = 0
    all_done = trio.Event()

    def account(customer: str, number: int) -> None:
        charged[customer].append(number)
        if sum(map(len, charged.values())) == len(CUSTOMERS) * ORDERS:
            all_done.set()

    async def charge(order: Publish) -> None:
        nonlocal running, most_running
        customer = order.topic.rsplit("/", 1)[1]
        number = int(order.payload)
        running += 1
        most_running = max(most_running, running)
        try:
            await trio.sleep(0.1)  # the payment service
            if customer == "bob" and number == 3:
                raise ValueError("card declined")
        finally:
            running -= 1
        account(customer, number)

    def report(order: Publish, exc: Exception) -> None:
        customer = order.topic.rsplit("/", 1)[1]
        print(f"order {customer}/{order.payload.decode()} failed: {exc}")
        account(customer, int(order.payload))

    options = MqttOptions.from_url(
        broker_url(), client_id="trio-mqtt-ordered-handlers", manual_acks=True
    )
    with trio.fail_after(10):  # an example must never hang
        async with (
            open_mqtt_connection(options) as conn,
            conn.route(f"{PREFIX}/+", qos=QoS.AT_LEAST_ONCE) as orders,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: orders.handle(charge, workers=4, on_error=report))
            for number in range(1, ORDERS + 1):
                for customer in CUSTOMERS:
                    await conn.client.publish(f"{PREFIX}/{customer}", str(number), qos=1)
            await all_done.wait()
            nursery.cancel_scope.cancel()  # handle() runs until cancelled or the route ends
    for customer in CUSTOMERS:
        print(f"{customer}: orders {charged[customer]}")
    print(f"at most {most_running} orders at once (one per customer)")


if __name__ == "__main__":
    trio.run(main)
