"""``-D``/``--property``: MQTT 5 properties written the way mosquitto_pub/sub take them.

``-D COMMAND NAME VALUE`` (``-D COMMAND user-property KEY VALUE`` for a user property): COMMAND
is the packet the property goes into (``connect``, ``publish``, ``subscribe``,
``unsubscribe``, ``disconnect`` or ``will``, in any case) and NAME a property name with dashes
(``message-expiry-interval``). Which property a packet may carry, and the range of each value,
come from the codec's own property table, so there is one rule for the command line and the wire.

argparse cannot give an option three or four values depending on the second one (nor values
that start with ``-``), so :func:`join_property_arguments` first rewrites each ``-D`` and its
values into one ``--property=...`` argument (values joined by NUL, which no command-line argument
can hold); :func:`property_argument` splits it again.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from trio_mqtt import InvalidOptionError, Properties
from trio_mqtt.sansio import PROPERTY_TABLE, WILL, PacketType, PropertyInfo, WireType

__all__ = ["PropertySet", "join_property_arguments", "property_argument"]

_SEPARATOR = "\x00"
_COMMANDS = {
    "connect": PacketType.CONNECT,
    "publish": PacketType.PUBLISH,
    "subscribe": PacketType.SUBSCRIBE,
    "unsubscribe": PacketType.UNSUBSCRIBE,
    "disconnect": PacketType.DISCONNECT,
    "will": WILL,
}
#: Packets the tools know but never send with properties of the user's choosing.
_UNSUPPORTED = ("puback", "pubrec", "pubrel", "pubcomp", "auth")


def _dashed(info: PropertyInfo) -> str:
    name = {
        "user_properties": "user_property",
        "subscription_identifiers": "subscription_identifier",
    }
    return name.get(info.name, info.name).replace("_", "-")


_BY_NAME = {_dashed(info): info for info in PROPERTY_TABLE}


class PropertyArgument(NamedTuple):
    """One ``-D``: the command, the property and its value (a pair for user properties)."""

    command: str
    info: PropertyInfo
    value: Any


def _value(info: PropertyInfo, values: Sequence[str]) -> Any:
    name = _dashed(info)
    if info.wire_type == WireType.STRING_PAIR:
        return (values[0], values[1])
    if info.wire_type == WireType.STRING:
        return values[0]
    if info.wire_type == WireType.BINARY:
        return values[0].encode("utf-8", "surrogateescape")
    try:
        number = int(values[0], 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{name} needs a whole number, got {values[0]!r}"
        ) from None
    if not info.minimum <= number <= info.maximum:
        raise argparse.ArgumentTypeError(
            f"property value ({number}) out of range for property {name} "
            f"({info.minimum} to {info.maximum})"
        )
    return number


def property_argument(text: str) -> PropertyArgument:
    """argparse type for one joined ``-D`` (see :func:`join_property_arguments`)."""
    parts = text.split(_SEPARATOR)
    if len(parts) < 3:
        raise argparse.ArgumentTypeError(
            "-D needs a command, a property name and a value: -D connect receive-maximum 10"
        )
    command, name, *values = parts
    command = command.lower()
    if command in _UNSUPPORTED:
        raise argparse.ArgumentTypeError(f"{name} property not supported for {command} in -D")
    if command not in _COMMANDS:
        known = ", ".join(_COMMANDS)
        raise argparse.ArgumentTypeError(f"invalid command {command!r} in -D (one of {known})")
    info = _BY_NAME.get(name.lower())
    if info is None:
        raise argparse.ArgumentTypeError(f"invalid property name {name!r} in -D")
    if not info.allowed & (1 << _COMMANDS[command]):
        raise argparse.ArgumentTypeError(f"{name} property not allowed for {command} in -D")
    wanted = 2 if info.wire_type == WireType.STRING_PAIR else 1
    if len(values) != wanted:
        raise argparse.ArgumentTypeError(
            f"-D {command} {name} takes {'a name and a value' if wanted == 2 else 'one value'}"
        )
    return PropertyArgument(command, info, _value(info, values))


def join_property_arguments(argv: Sequence[str]) -> list[str]:
    """Rewrite each ``-D COMMAND NAME VALUE...`` in ``argv`` as one ``--property=`` argument.

    Everything from ``--`` on is left alone. A message that is literally ``-D`` has to be
    attached to its option (``-m-D``), as argparse allows. A ``-D`` short of values is joined
    as far as it goes, and :func:`property_argument` reports what is missing.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg in ("-D", "--property"):
            count = 3
            if i + 2 < len(argv) and argv[i + 2].lower() == "user-property":
                count = 4
            values = list(argv[i + 1 : i + 1 + count])
            out.append("--property=" + _SEPARATOR.join(values))
            i += 1 + len(values)
            continue
        out.append(arg)
        i += 1
    return out


class PropertySet:
    """The ``-D`` properties of a command line, gathered per packet."""

    def __init__(self, arguments: Iterable[PropertyArgument]) -> None:
        self._values: dict[str, dict[str, Any]] = {}
        for argument in arguments:
            values = self._values.setdefault(argument.command, {})
            name = argument.info.name
            if argument.info.wire_type == WireType.STRING_PAIR:
                values[name] = (*values.get(name, ()), argument.value)
            elif name == "subscription_identifiers":
                values[name] = (argument.value,)
            else:
                values[name] = argument.value

    def __bool__(self) -> bool:
        return bool(self._values)

    def get(self, command: str) -> Properties:
        """The properties given for one packet (empty ones when there are none)."""
        return Properties(**self._values.get(command, {}))

    def connect_options(self) -> dict[str, Any]:
        """The CONNECT properties as :class:`~trio_mqtt.MqttOptions` settings."""
        values = dict(self._values.get("connect", {}))
        options: dict[str, Any] = {}
        for name in (
            "session_expiry_interval",
            "receive_maximum",
            "topic_alias_maximum",
            "user_properties",
        ):
            if name in values:
                options[name] = values.pop(name)
        if "maximum_packet_size" in values:  # ours, announced to the broker
            options["max_incoming_packet_size"] = values.pop("maximum_packet_size")
        for flag in ("request_problem_information", "request_response_information"):
            if flag in values:
                options[flag] = bool(values.pop(flag))
        if "authentication_method" in values:
            options["authenticator"] = _StaticAuthenticator(
                values.pop("authentication_method"), values.pop("authentication_data", None)
            )
        if values:
            raise InvalidOptionError(
                f"-D connect {', '.join(sorted(values))}: needs -D connect authentication-method"
            )
        return options


class _StaticAuthenticator:
    """``-D connect authentication-method M [-D connect authentication-data D]``.

    Sends the method and data in CONNECT and has no answer for a challenge, as mosquitto's
    tools (the broker decides whether that is enough).
    """

    def __init__(self, method: str, data: bytes | None) -> None:
        self.method = method
        self._data = data

    def initial_data(self) -> bytes | None:
        return self._data

    def challenge(self, data: bytes | None) -> bytes | None:
        return None

    def complete(self, data: bytes | None) -> None:
        return None
