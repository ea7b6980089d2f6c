"""Requests that client handles send to the event loop, and the trackers that report outcomes.

A request is a small slotted object put on a Trio memory channel. A request that somebody waits
on carries a tracker; the state machine hands the tracker back as the ``tag`` of its ``*Done``
event, and the event loop resolves it. Trackers are resolved exactly once: with the broker's
answer, or with the error that ended the session (so a waiting caller never hangs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

from ._core._errors import ConnectionLost, MqttError, PublishDiscarded, SessionStoreError
from ._core._events import (
    DROPPED_EXPIRED,
    DROPPED_QUEUE_FULL,
    DROPPED_STORE_FAILED,
    PublishDropped,
)
from ._core._packets import NO_PROPERTIES, Properties, QoS, Subscription
from ._core._reason_codes import ReasonCode

__all__ = [
    "AckRequest",
    "DisconnectRequest",
    "PublishRequest",
    "PublishResult",
    "ReauthRequest",
    "Request",
    "SubscribeRequest",
    "SubscribeResult",
    "Tracker",
    "UnsubscribeRequest",
    "UnsubscribeResult",
    "dropped_error",
    "fail_tracker",
    "resolve_tracker",
]

T = TypeVar("T")


def _reason(code: int) -> ReasonCode | int:
    try:
        return ReasonCode(code)
    except ValueError:
        return code


class Tracker(Generic[T]):
    """The pending outcome of one request; :meth:`wait` returns it once the broker answered.

    Returned by the ``*_tracked`` client methods. Waiting is optional: a request completes
    whether or not anybody waits, and cancelling :meth:`wait` does not cancel the request.
    """

    __slots__ = ("_error", "_event", "_result")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._result: T | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """True once the outcome is known."""
        return self._event.is_set()

    async def wait(self) -> T:
        """Wait for the broker's answer; raise the error that ended the session instead."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


def resolve_tracker(tracker: Tracker[T], result: T) -> None:
    """Complete ``tracker`` with the broker's answer (only the first outcome counts)."""
    if not tracker._event.is_set():
        tracker._result = result
        tracker._event.set()


def fail_tracker(tracker: Tracker[object], error: BaseException) -> None:
    """Complete ``tracker`` with the error that ended its request (first outcome counts)."""
    if not tracker._event.is_set():
        tracker._error = error
        tracker._event.set()


_DROPPED = {
    DROPPED_EXPIRED: (PublishDiscarded, "its message expiry interval passed before it was sent"),
    DROPPED_QUEUE_FULL: (PublishDiscarded, "dropped unsent to admit newer ones (drop_oldest)"),
    DROPPED_STORE_FAILED: (SessionStoreError, "the session store could not commit it"),
}


def dropped_error(event: PublishDropped) -> MqttError:
    """The error the tracker of a dropped publish fails with (one per drop reason)."""
    error_type, message = _DROPPED.get(
        event.reason, (ConnectionLost, "the broker lost the session; the message was dropped")
    )
    return error_type(message)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The broker's answer to a publish.

    Attributes:
        packet_id: the packet identifier used (0 for QoS 0).
        reason_code: 0 (or another code below 0x80) when the broker took the message; 0x80 and
            above when it refused it (MQTT 5 only). QoS 0 always reports 0 once written.
        properties: MQTT 5 properties of the acknowledgement (reason string, user properties).
    """

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES

    @property
    def is_success(self) -> bool:
        """True when the broker accepted the message."""
        return self.reason_code < 0x80

    @property
    def reason(self) -> ReasonCode | int:
        """:attr:`reason_code` as a :class:`~trio_mqtt.ReasonCode` (the int if unknown)."""
        return _reason(self.reason_code)


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """The broker's SUBACK: one code per filter, the granted QoS (0-2) or a failure (>= 0x80)."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES

    @property
    def is_success(self) -> bool:
        """True when every filter was granted."""
        return all(code < 0x80 for code in self.reason_codes)

    @property
    def granted_qos(self) -> tuple[QoS | None, ...]:
        """The QoS granted per filter, ``None`` where the broker refused the filter."""
        return tuple(QoS(code) if code < 3 else None for code in self.reason_codes)

    @property
    def reasons(self) -> tuple[ReasonCode | int, ...]:
        """``reason_codes`` as :class:`~trio_mqtt.ReasonCode` values."""
        return tuple(_reason(code) for code in self.reason_codes)


@dataclass(frozen=True, slots=True)
class UnsubscribeResult:
    """The broker's UNSUBACK (reason codes are empty for MQTT 3.1.1 brokers)."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(slots=True)
class PublishRequest:
    """Publish a message."""

    topic: str
    payload: bytes
    qos: QoS
    retain: bool
    properties: Properties
    tracker: Tracker[PublishResult] | None = None


@dataclass(slots=True)
class SubscribeRequest:
    """Subscribe to one or more filters."""

    subscriptions: tuple[Subscription, ...]
    properties: Properties
    tracker: Tracker[SubscribeResult] | None = None


@dataclass(slots=True)
class UnsubscribeRequest:
    """Unsubscribe from one or more filters."""

    topic_filters: tuple[str, ...]
    properties: Properties
    tracker: Tracker[UnsubscribeResult] | None = None


@dataclass(slots=True)
class AckRequest:
    """Manual acknowledgement of an incoming QoS 1/2 publish."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES
    tracker: Tracker[None] | None = None


@dataclass(slots=True)
class DisconnectRequest:
    """End the session, after letting inflight flows finish for up to ``grace_period`` s."""

    grace_period: float
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES
    tracker: Tracker[None] | None = None


@dataclass(slots=True)
class ReauthRequest:
    """Start MQTT 5 re-authentication."""

    tracker: Tracker[None] | None = None


Request = SubscribeRequest | UnsubscribeRequest | AckRequest | DisconnectRequest | ReauthRequest
