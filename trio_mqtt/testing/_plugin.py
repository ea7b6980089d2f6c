"""pytest plugin (entry point ``trio_mqtt``): fixtures that run private mosquitto brokers.

Loading the plugin imports only the standard library and :mod:`trio_mqtt.testing`; trustme is
imported when a broker with TLS is made, and no broker starts until a test asks for a fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from ._broker import MosquittoBroker

__all__ = ["BrokerFactory", "mosquitto", "mosquitto_factory"]


class BrokerFactory(Protocol):
    """What the ``mosquitto_factory`` fixture returns: call it like :class:`MosquittoBroker`."""

    def __call__(self, **options: Any) -> MosquittoBroker:
        """Make and start a broker; it is closed when the test ends."""
        ...


@pytest.fixture
def mosquitto_factory() -> Iterator[BrokerFactory]:
    """Start brokers with any :class:`MosquittoBroker` options; all are closed at teardown.

    Example::

        def test_login(mosquitto_factory):
            broker = mosquitto_factory(users={"alice": "secret"}, tls=True)
            ...
    """
    brokers: list[MosquittoBroker] = []

    def make(**options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(**options)
        brokers.append(broker)
        broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in reversed(brokers):
            broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: BrokerFactory) -> MosquittoBroker:
    """A running broker with default settings (anonymous access, one plain MQTT listener).

    Each test gets a fresh broker, so retained messages and sessions never leak from one test
    to the next; starting one takes a few tens of milliseconds.
    """
    return mosquitto_factory()
