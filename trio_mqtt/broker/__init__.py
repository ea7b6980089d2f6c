"""An embeddable MQTT 3.1.1 and 5.0 broker for Trio programs and tests.

``async with open_mqtt_broker() as broker:`` runs a broker on a free port of 127.0.0.1 for the
duration of the block; :attr:`MqttBroker.port` and :attr:`MqttBroker.url` say where. The protocol
lives in a sans-IO core (:class:`Broker`, one :class:`BrokerConnection` per client, written on
the same packet codec as the client); this package only moves bytes. See the "Embedded broker"
page of the documentation for what it supports, its limits and its configuration.
"""

from __future__ import annotations

from .._core._broker import (
    Broker as Broker,
    BrokerConfig as BrokerConfig,
    BrokerConnection as BrokerConnection,
    BrokerStatistics as BrokerStatistics,
)
from ._acl import AccessControl as AccessControl, AclError as AclError
from ._config_file import (
    BrokerSettings as BrokerSettings,
    ConfigError as ConfigError,
    PasswordFile as PasswordFile,
    load_config as load_config,
)
from ._persist import BrokerStore as BrokerStore
from ._server import (
    BoundListener as BoundListener,
    Listener as Listener,
    MqttBroker as MqttBroker,
    open_mqtt_broker as open_mqtt_broker,
)

__all__ = [
    "AccessControl",
    "AclError",
    "BoundListener",
    "Broker",
    "BrokerConfig",
    "BrokerConnection",
    "BrokerSettings",
    "BrokerStatistics",
    "BrokerStore",
    "ConfigError",
    "Listener",
    "MqttBroker",
    "PasswordFile",
    "load_config",
    "open_mqtt_broker",
]
