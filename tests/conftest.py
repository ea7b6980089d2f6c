"""Shared test configuration.

The ``mosquitto`` and ``mosquitto_factory`` fixtures come from trio-mqtt's own pytest plugin
(``trio_mqtt.testing._plugin``). An installed trio-mqtt (``pip install -e .``, as nox does)
registers it through its ``pytest11`` entry point; when the tests run from a plain checkout we
register it here, once.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PLUGIN_ENTRY_POINT = "trio_mqtt"
PLUGIN_MODULE = "trio_mqtt.testing._plugin"


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not manager.has_plugin(PLUGIN_ENTRY_POINT) and not manager.has_plugin(PLUGIN_MODULE):
        manager.import_plugin(PLUGIN_MODULE)
