"""pytest plugin (entry point ``trio_mqtt``): fixtures that run private brokers.

``mosquitto`` and ``mosquitto_factory`` run mosquitto processes; ``embedded_broker`` and
``embedded_broker_factory`` run the embedded broker (:mod:`trio_mqtt.broker`) in a thread, which
needs nothing installed.

Loading the plugin imports only the standard library and :mod:`trio_mqtt.testing`; trustme is
imported when a broker with TLS is made, and no broker starts until a test asks for a fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from ._broker import MosquittoBroker
from ._embedded import EmbeddedBroker

__all__ = [
    "BrokerFactory",
    "EmbeddedBrokerFactory",
    "embedded_broker",
    "embedded_broker_factory",
    "mosquitto",
    "mosquitto_factory",
]


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


class EmbeddedBrokerFactory(Protocol):
    """What ``embedded_broker_factory`` returns: call it like :class:`EmbeddedBroker`."""

    def __call__(self, **options: Any) -> EmbeddedBroker:
        """Make and start an embedded broker; it is closed when the test ends."""
        ...


@pytest.fixture
def embedded_broker_factory() -> Iterator[EmbeddedBrokerFactory]:
    """Start embedded brokers with any :class:`EmbeddedBroker` options; closed at teardown.

    Example::

        def test_login(embedded_broker_factory):
            broker = embedded_broker_factory(users={"alice": "secret"})
            ...
    """
    brokers: list[EmbeddedBroker] = []

    def make(**options: Any) -> EmbeddedBroker:
        broker = EmbeddedBroker(**options)
        brokers.append(broker)
        broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in reversed(brokers):
            broker.close()


@pytest.fixture
def embedded_broker(embedded_broker_factory: EmbeddedBrokerFactory) -> EmbeddedBroker:
    """A running embedded broker with default settings, fresh for each test (no mosquitto
    needed; it starts in about a millisecond)."""
    return embedded_broker_factory()
