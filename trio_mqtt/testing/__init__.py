"""Helpers for testing code that uses trio-mqtt: a private mosquitto broker and pytest fixtures.

:class:`MosquittoBroker` runs mosquitto in a subprocess on free ports of 127.0.0.1, with the
listeners and limits a test asks for. Installing trio-mqtt registers a pytest plugin
(``trio_mqtt.testing._plugin``) with two fixtures, ``mosquitto`` and ``mosquitto_factory``; see
the "Testing your code" page of the documentation. :func:`open_fault_proxy` puts a TCP proxy
between a client and a broker that can cut, stall, slow down or fragment the connection on
command, for testing how code behaves when the network misbehaves.
"""

from __future__ import annotations

from ._broker import (
    INSTALL_HINT as INSTALL_HINT,
    MosquittoBroker as MosquittoBroker,
    MosquittoError as MosquittoError,
    find_mosquitto as find_mosquitto,
)
from ._embedded import EmbeddedBroker as EmbeddedBroker, EmbeddedBrokerError as EmbeddedBrokerError
from ._faults import FaultProxy as FaultProxy, open_fault_proxy as open_fault_proxy

__all__ = [
    "INSTALL_HINT",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "FaultProxy",
    "MosquittoBroker",
    "MosquittoError",
    "find_mosquitto",
    "open_fault_proxy",
]
