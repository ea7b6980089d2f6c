"""The messages of the two connection failures a new user meets first.

A closed port says "connection refused" in the message itself (not only in the exception group
of trio's connection attempts), and TLS to a plain MQTT port asks "is this a TLS port?".
"""

from __future__ import annotations

import socket

import pytest
import trio

from trio_mqtt import MqttOptions, TlsError, TlsTransport, TransportError, open_mqtt_connection
from trio_mqtt.__main__ import main
from trio_mqtt.testing import MosquittoBroker


def closed_port() -> int:
    """A loopback port that nothing listens on (bound for a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_closed_port_says_connection_refused() -> None:
    options = MqttOptions("refused", "127.0.0.1", closed_port(), connect_timeout=5)
    with trio.fail_after(10), pytest.raises(TransportError) as info:
        async with open_mqtt_connection(options):
            pass  # pragma: no cover - the connection cannot open
    message = str(info.value)
    assert "connection refused" in message
    assert f"127.0.0.1:{options.port}" in message


def test_cli_closed_port_says_connection_refused(capsys) -> None:
    assert main(["pub", "-h", "127.0.0.1", "-p", str(closed_port()), "-t", "x", "-m", "y"]) == 4
    err = capsys.readouterr().err
    assert "connection refused" in err
    assert len(err.strip().splitlines()) == 1


async def test_tls_to_a_plain_port_asks_whether_it_is_a_tls_port(
    mosquitto: MosquittoBroker,
) -> None:
    options = MqttOptions(
        "tls-to-plain",
        mosquitto.host,
        mosquitto.port,
        transport=TlsTransport(dangerously_disable_verification=True),
    )
    with trio.fail_after(10), pytest.raises(TlsError) as info:
        async with open_mqtt_connection(options):
            pass  # pragma: no cover - the handshake cannot succeed
    assert "is this a TLS port?" in str(info.value)


def test_cli_tls_to_a_plain_port(mosquitto: MosquittoBroker, capsys) -> None:
    argv = ["sub", "-h", mosquitto.host, "-p", str(mosquitto.port), "--tls", "-t", "x"]
    assert main([*argv, "-W", "5"]) == 4
    err = capsys.readouterr().err
    assert "is this a TLS port?" in err
