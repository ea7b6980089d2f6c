"""MqttOptions refuses bad values at construction, with a message naming the option."""

from __future__ import annotations

import pytest

from trio_mqtt import InvalidOptionError, MqttOptions, ProtocolVersion, ReconnectPolicy, Will


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("keep_alive", 1.5, "keep_alive must be a whole number, got 1.5"),
        ("keep_alive", "60", "keep_alive must be a whole number"),
        ("keep_alive", True, "keep_alive must be a whole number"),
        ("port", "1883", "port must be a whole number"),
        ("inflight", 2.5, "inflight must be a whole number"),
        ("receive_maximum", 10.0, "receive_maximum must be a whole number"),
        ("clean_start", "no", "clean_start must be True or False, got 'no'"),
        ("manual_acks", 1, "manual_acks must be True or False"),
        ("connect_timeout", "5", "connect_timeout must be a number of seconds"),
        ("ping_timeout", False, "ping_timeout must be a number of seconds"),
        ("host", None, "host must be a string"),
        ("username", 7, "username must be a string or None"),
        ("password", 7, "password must be a string, bytes or None"),
        ("will", ("t", b"x"), "will must be a Will or None"),
        ("reconnect", "yes", "reconnect must be a ReconnectPolicy or None"),
    ],
)
def test_wrong_types_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message.replace("(", r"\(")):
        MqttOptions("c", **{field: value})  # type: ignore[arg-type]


def test_client_id_must_be_a_string() -> None:
    with pytest.raises(InvalidOptionError, match="client_id must be a string, got 5"):
        MqttOptions(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("keep_alive", 70000, "keep_alive must be between 0 and 65535"),
        ("port", -1, "port must be between"),
        ("inflight", 0, "inflight must be between 1"),
        ("connect_timeout", 0, "connect_timeout must be positive"),
        ("ping_timeout", -1.0, "ping_timeout must be positive"),
        ("host", "", "host must be a non-empty string"),
    ],
)
def test_out_of_range_values_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        MqttOptions("c", **{field: value})  # type: ignore[arg-type]


def test_good_values_of_every_accepted_type() -> None:
    options = MqttOptions(
        "c",
        keep_alive=0,
        connect_timeout=2,  # an int is a number of seconds too
        ping_timeout=0.5,
        password=b"secret",
        username="u",
        receive_maximum=None,
        will=Will("w", b"bye"),
        reconnect=ReconnectPolicy(),
        protocol_version=5,  # type: ignore[arg-type]
    )
    assert options.protocol_version is ProtocolVersion.V5
    assert (options.keep_alive, options.connect_timeout, options.ping_timeout) == (0, 2, 0.5)
