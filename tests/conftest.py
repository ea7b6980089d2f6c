"""Shared test configuration.

The ``mosquitto`` and ``mosquitto_factory`` fixtures come from trio-mqtt's own pytest plugin
(``trio_mqtt.testing._plugin``). An installed trio-mqtt (``pip install -e .``, as nox does)
registers it through its ``pytest11`` entry point; when the tests run from a plain checkout we
register it here, once.

With ``TRIO_MQTT_TEST_BROKER=embedded`` the ``mosquitto`` and ``mosquitto_factory`` fixtures
give the embedded broker (:class:`trio_mqtt.testing.EmbeddedBroker`, same interface) instead,
so every integration test written against mosquitto also runs against it; a test asking for a
mosquitto option the embedded broker does not have is skipped. CI runs both ways.
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["pytester"]

PLUGIN_ENTRY_POINT = "trio_mqtt"
PLUGIN_MODULE = "trio_mqtt.testing._plugin"


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not manager.has_plugin(PLUGIN_ENTRY_POINT) and not manager.has_plugin(PLUGIN_MODULE):
        manager.import_plugin(PLUGIN_MODULE)


EMBEDDED = os.environ.get("TRIO_MQTT_TEST_BROKER", "mosquitto") == "embedded"

if EMBEDDED:

    @pytest.fixture
    def mosquitto_factory() -> Iterator[Any]:
        """The embedded broker in place of mosquitto (TRIO_MQTT_TEST_BROKER=embedded)."""
        from trio_mqtt.testing import EmbeddedBroker

        brokers: list[EmbeddedBroker] = []

        def make(**options: Any) -> EmbeddedBroker:
            try:
                broker = EmbeddedBroker(**options)
            except NotImplementedError as exc:
                pytest.skip(f"embedded broker: {exc}")
            brokers.append(broker)
            broker.start()
            return broker

        try:
            yield make
        finally:
            for broker in reversed(brokers):
                broker.close()


#: how long a test of the synchronous API may take before the watchdog ends the run
SYNC_WATCHDOG_SECONDS = 30


@pytest.fixture
def sync_watchdog() -> Iterator[None]:
    """Bound a test of blocking code in time: a hang dumps every thread's stack and exits.

    Trio's ``fail_after`` cannot reach a thread blocked outside Trio (the sync API's caller),
    so the sync tests use this instead (``pytestmark = pytest.mark.usefixtures(...)``).
    """
    faulthandler.dump_traceback_later(SYNC_WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
