"""One DEBUG line per packet on the ``trio_mqtt.packets`` logger, without payloads or secrets.

Each line says the direction, the packet type and what identifies it: packet id, topic, QoS and
flags, payload size, reason codes, CONNECT's client id and whether a user name, password or will
is set (never their values, nor any payload or authentication data). The event loop calls
:func:`log_packets` only while the logger is enabled for DEBUG, so it costs nothing otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ._core._events import Event, Incoming, Outgoing
from ._core._packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)

__all__ = ["describe_packet", "log_packets", "packet_logger"]

packet_logger = logging.getLogger("trio_mqtt.packets")


def describe_packet(packet: Packet) -> str:
    """A one-line description of ``packet`` that never shows payloads or credentials."""
    name = type(packet).__name__.upper()
    if isinstance(packet, Publish):
        flags = f"qos={int(packet.qos)} retain={int(packet.retain)} dup={int(packet.dup)}"
        ident = f" id={packet.packet_id}" if packet.qos else ""
        return f"PUBLISH{ident} topic={packet.topic!r} {flags} payload={len(packet.payload)} B"
    if isinstance(packet, Connect):
        return (
            f"CONNECT client_id={packet.client_id!r} version={int(packet.protocol_version)} "
            f"keep_alive={packet.keep_alive} clean_start={int(packet.clean_start)} "
            f"username={'set' if packet.username is not None else 'none'} "
            f"password={'set' if packet.password is not None else 'none'} "
            f"will={'set' if packet.will is not None else 'none'}"
        )
    if isinstance(packet, ConnAck):
        return (
            f"CONNACK session_present={int(packet.session_present)} code=0x{packet.reason_code:02x}"
        )
    if isinstance(packet, Subscribe):
        filters = ", ".join(f"{s.topic_filter!r}@{int(s.qos)}" for s in packet.subscriptions)
        return f"SUBSCRIBE id={packet.packet_id} {filters}"
    if isinstance(packet, Unsubscribe):
        filters = ", ".join(repr(f) for f in packet.topic_filters)
        return f"UNSUBSCRIBE id={packet.packet_id} {filters}"
    if isinstance(packet, SubAck | UnsubAck):
        codes = ",".join(f"0x{code:02x}" for code in packet.reason_codes)
        return f"{name} id={packet.packet_id} codes={codes or '-'}"
    if isinstance(packet, Disconnect | Auth):
        return f"{name} code=0x{packet.reason_code:02x}"
    packet_id: int | None = getattr(packet, "packet_id", None)
    if packet_id is None:
        return name
    code: int = getattr(packet, "reason_code", 0)
    return f"{name} id={packet_id}" + (f" code=0x{code:02x}" if code else "")


def log_packets(events: Iterable[Event]) -> None:
    """Log every packet sent or received among ``events`` (DEBUG, ``trio_mqtt.packets``)."""
    for event in events:
        kind = type(event)
        if kind is Incoming:
            packet_logger.debug("received %s", describe_packet(event.packet))  # type: ignore[union-attr]
        elif kind is Outgoing:
            packet_logger.debug("sending %s", describe_packet(event.packet))  # type: ignore[union-attr]
