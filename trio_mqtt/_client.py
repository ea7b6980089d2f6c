"""The client handle: a cloneable sender of requests to the event loop.

A :class:`Client` wraps two Trio memory send channels: one for publishes and one for everything
else (subscribe, unsubscribe, acks, disconnect). The event loop stops taking publishes while
the outgoing window is full, which blocks publishers (natural backpressure), but it always takes
control requests, so an ack or a subscribe is never stuck behind a full window. ``clone()``
clones both channels; when every clone is closed the event loop sees both channels end and the
connection finishes with :class:`~trio_mqtt.RequestsDone`.

Arguments are validated here, in the caller's task, so a bad topic raises at the call site.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from ._core._errors import InvalidOptionError, LocalProtocolError
from ._core._packets import (
    NO_PROPERTIES,
    Properties,
    Publish,
    QoS,
    RetainHandling,
    Subscription,
)
from ._core._topics import validate_filter, validate_topic
from ._requests import (
    AckRequest,
    DisconnectRequest,
    PublishRequest,
    PublishResult,
    ReauthRequest,
    Request,
    SubscribeRequest,
    SubscribeResult,
    Tracker,
    UnsubscribeRequest,
    UnsubscribeResult,
)

if TYPE_CHECKING:
    from ._eventloop import EventLoop

__all__ = ["Client", "SubscriptionRefused"]

Payload = bytes | bytearray | memoryview | str


class SubscriptionRefused(LocalProtocolError):
    """The broker refused a subscription (SUBACK code 0x80 or above).

    Attributes:
        result: the whole SUBACK, with one code per filter.
    """

    def __init__(self, result: SubscribeResult) -> None:
        codes = ", ".join(f"0x{code:02x}" for code in result.reason_codes)
        super().__init__(f"the broker refused the subscription (SUBACK codes: {codes})")
        self.result = result


def _payload_bytes(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    raise TypeError(f"payload must be bytes or str, not {type(payload).__name__}")


_QOS_LEVELS = {0: QoS.AT_MOST_ONCE, 1: QoS.AT_LEAST_ONCE, 2: QoS.EXACTLY_ONCE}


def _qos(value: int) -> QoS:
    level = _QOS_LEVELS.get(value)
    if level is None:
        raise InvalidOptionError(f"qos must be 0, 1 or 2, got {value!r}")
    return level


class Client:
    """Sends requests to an MQTT connection. Get one from :attr:`MqttConnection.client`.

    Every method has a ``*_nowait`` twin that raises :class:`trio.WouldBlock` instead of
    waiting when the request queue is full. Handles are cheap: :meth:`clone` one per task, and
    close each when done (``async with client:`` does it).
    """

    __slots__ = ("_closed", "_control", "_loop", "_publish")

    def __init__(
        self,
        loop: EventLoop,
        publish_channel: trio.MemorySendChannel[PublishRequest],
        control_channel: trio.MemorySendChannel[Request],
    ) -> None:
        self._loop = loop
        self._publish = publish_channel
        self._control = control_channel
        self._closed = False

    # ------------------------------------------------------------------ handles
    def clone(self) -> Client:
        """Another handle to the same connection; the connection lives while any is open."""
        return Client(self._loop, self._publish.clone(), self._control.clone())

    def close(self) -> None:
        """Release this handle (idempotent)."""
        if not self._closed:
            self._closed = True
            self._publish.close()
            self._control.close()

    async def aclose(self) -> None:
        """Release this handle (idempotent); a checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ publish
    def _publish_request(
        self,
        topic: str,
        payload: Payload,
        qos: int,
        retain: bool,
        properties: Properties | None,
        tracker: Tracker[PublishResult] | None,
    ) -> PublishRequest:
        validate_topic(topic)
        request = PublishRequest(
            topic,
            _payload_bytes(payload),
            _qos(qos),
            bool(retain),
            properties if properties is not None else NO_PROPERTIES,
            tracker,
        )
        self._loop._check_publish(request)
        return request

    async def publish(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> None:
        """Queue a message for publishing; returns once the event loop has it.

        Blocks while the request queue is full (and the outgoing window with it). Invalid
        topics, QoS values and sizes raise here, before anything is queued. Use
        :meth:`publish_tracked` to learn when the broker has the message.
        """
        await self._submit(self._publish_request(topic, payload, qos, retain, properties, None))

    async def _submit(self, request: PublishRequest) -> None:
        """Admit a publish: straight into the state machine when nothing is queued ahead of
        it and the window has room, else through the channel (which may block).

        Either way a cancelled call was not admitted and an admitted one was not cancelled,
        exactly like ``MemorySendChannel.send``: cancellation is only checked before.
        """
        if self._closed:
            raise trio.ClosedResourceError("this client handle is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        loop = self._loop
        if loop._publish_directly(request):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        loop._queued_publishes += 1
        try:
            await self._publish.send(request)
        except BaseException:
            loop._queued_publishes -= 1
            raise

    def _submit_nowait(self, request: PublishRequest) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this client handle is closed")
        loop = self._loop
        if loop._publish_directly(request):
            return
        self._publish.send_nowait(request)
        loop._queued_publishes += 1

    def publish_nowait(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> None:
        """Like :meth:`publish`, but raise :class:`trio.WouldBlock` when the queue is full."""
        self._submit_nowait(self._publish_request(topic, payload, qos, retain, properties, None))

    async def publish_tracked(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> Tracker[PublishResult]:
        """Queue a message and return a tracker whose ``wait()`` gives the broker's answer.

        The tracker completes when QoS 0 is written, on PUBACK for QoS 1 and on PUBCOMP (or a
        failing PUBREC) for QoS 2.
        """
        tracker: Tracker[PublishResult] = Tracker()
        await self._submit(self._publish_request(topic, payload, qos, retain, properties, tracker))
        return tracker

    def publish_tracked_nowait(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> Tracker[PublishResult]:
        """Like :meth:`publish_tracked`, but raise :class:`trio.WouldBlock` when full."""
        tracker: Tracker[PublishResult] = Tracker()
        self._submit_nowait(self._publish_request(topic, payload, qos, retain, properties, tracker))
        return tracker

    # ------------------------------------------------------------------ subscribe
    @staticmethod
    def _subscribe_request(
        subscriptions: Iterable[Subscription | str | tuple[str, int]],
        properties: Properties | None,
    ) -> SubscribeRequest:
        # one filter given alone, not in a list: a string would otherwise be iterated as
        # one-character filters
        if isinstance(subscriptions, str | Subscription) or (
            isinstance(subscriptions, tuple)
            and len(subscriptions) == 2
            and isinstance(subscriptions[1], int)
        ):
            subscriptions = [subscriptions]
        items: list[Subscription] = []
        for item in subscriptions:
            if isinstance(item, str):
                item = Subscription(item)
            elif isinstance(item, tuple):
                item = Subscription(item[0], _qos(item[1]))
            validate_filter(item.topic_filter)
            items.append(item)
        if not items:
            raise InvalidOptionError("subscribe needs at least one topic filter")
        return SubscribeRequest(
            tuple(items), properties if properties is not None else NO_PROPERTIES, Tracker()
        )

    async def subscribe(
        self,
        topic_filter: str,
        qos: int = QoS.AT_MOST_ONCE,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE,
        properties: Properties | None = None,
    ) -> SubscribeResult:
        """Subscribe to one filter and wait for the SUBACK.

        Raises:
            SubscriptionRefused: the broker answered with a failure code.
            InvalidTopicError: the filter is not valid.
        """
        subscription = Subscription(
            topic_filter, _qos(qos), no_local, retain_as_published, retain_handling
        )
        result = await self.subscribe_many([subscription], properties=properties)
        if not result.is_success:
            raise SubscriptionRefused(result)
        return result

    async def subscribe_many(
        self,
        subscriptions: Sequence[Subscription | str | tuple[str, int]],
        *,
        properties: Properties | None = None,
    ) -> SubscribeResult:
        """Subscribe to several filters in one SUBSCRIBE and wait for the SUBACK.

        Each item is a :class:`Subscription`, a filter (QoS 0) or a ``(filter, qos)`` pair.
        Returns the SUBACK codes, one per filter, without raising for refused ones.
        """
        tracker = await self.subscribe_tracked(subscriptions, properties=properties)
        return await tracker.wait()

    async def subscribe_tracked(
        self,
        subscriptions: Sequence[Subscription | str | tuple[str, int]],
        *,
        properties: Properties | None = None,
    ) -> Tracker[SubscribeResult]:
        """Queue a SUBSCRIBE and return a tracker for its SUBACK without waiting for it."""
        request = self._subscribe_request(subscriptions, properties)
        await self._control.send(request)
        assert request.tracker is not None
        return request.tracker

    def subscribe_nowait(
        self,
        subscriptions: Sequence[Subscription | str | tuple[str, int]],
        *,
        properties: Properties | None = None,
    ) -> Tracker[SubscribeResult]:
        """Queue a SUBSCRIBE or raise :class:`trio.WouldBlock`; returns its tracker."""
        request = self._subscribe_request(subscriptions, properties)
        self._control.send_nowait(request)
        assert request.tracker is not None
        return request.tracker

    # ------------------------------------------------------------------ unsubscribe
    @staticmethod
    def _unsubscribe_request(
        topic_filters: Sequence[str], properties: Properties | None
    ) -> UnsubscribeRequest:
        if isinstance(topic_filters, str):
            topic_filters = [topic_filters]
        for topic_filter in topic_filters:
            validate_filter(topic_filter)
        if not topic_filters:
            raise InvalidOptionError("unsubscribe needs at least one topic filter")
        return UnsubscribeRequest(
            tuple(topic_filters),
            properties if properties is not None else NO_PROPERTIES,
            Tracker(),
        )

    async def unsubscribe(
        self, topic_filter: str, *, properties: Properties | None = None
    ) -> UnsubscribeResult:
        """Unsubscribe from one filter and wait for the UNSUBACK."""
        return await self.unsubscribe_many([topic_filter], properties=properties)

    async def unsubscribe_many(
        self, topic_filters: Sequence[str], *, properties: Properties | None = None
    ) -> UnsubscribeResult:
        """Unsubscribe from several filters in one UNSUBSCRIBE and wait for the UNSUBACK."""
        request = self._unsubscribe_request(topic_filters, properties)
        await self._control.send(request)
        assert request.tracker is not None
        return await request.tracker.wait()

    def unsubscribe_nowait(
        self, topic_filters: Sequence[str], *, properties: Properties | None = None
    ) -> Tracker[UnsubscribeResult]:
        """Queue an UNSUBSCRIBE or raise :class:`trio.WouldBlock`; returns its tracker."""
        request = self._unsubscribe_request(topic_filters, properties)
        self._control.send_nowait(request)
        assert request.tracker is not None
        return request.tracker

    # ------------------------------------------------------------------ acks
    @staticmethod
    def _ack_request(message: Publish | int, reason_code: int) -> AckRequest:
        packet_id = message.packet_id if isinstance(message, Publish) else message
        if not 1 <= packet_id <= 65535:
            raise InvalidOptionError("only QoS 1/2 publishes (packet id 1-65535) are acked")
        return AckRequest(packet_id, reason_code)

    async def ack(self, message: Publish | int, reason_code: int = 0) -> None:
        """Acknowledge an incoming QoS 1/2 publish (manual-ack mode): PUBACK or PUBREC.

        Raises:
            UnknownPacketIdError: the packet id is not waiting for an ack (never received, or
                acked already); the connection is not affected.
        """
        request = self._ack_request(message, reason_code)
        tracker: Tracker[None] = Tracker()
        request.tracker = tracker
        await self._control.send(request)
        await tracker.wait()

    def ack_nowait(self, message: Publish | int, reason_code: int = 0) -> None:
        """Like :meth:`ack`, but raise :class:`trio.WouldBlock` when the queue is full.

        Nobody waits for the outcome, so an unknown packet id is only logged (warning).
        """
        self._control.send_nowait(self._ack_request(message, reason_code))

    # ------------------------------------------------------------------ disconnect
    async def disconnect(
        self,
        grace_period: float = 5.0,
        *,
        reason_code: int = 0,
        properties: Properties | None = None,
    ) -> None:
        """Disconnect gracefully and wait until it is done.

        QoS 1/2 flows in flight get up to ``grace_period`` seconds to finish, then DISCONNECT is
        sent and the connection closes. Unfinished flows stay in the session state.
        """
        tracker: Tracker[None] = Tracker()
        await self._control.send(
            DisconnectRequest(True, grace_period, reason_code, properties or NO_PROPERTIES, tracker)
        )
        await tracker.wait()

    def disconnect_nowait(
        self, *, reason_code: int = 0, properties: Properties | None = None
    ) -> None:
        """Send DISCONNECT at once (without waiting for inflight flows) and close."""
        self._control.send_nowait(
            DisconnectRequest(False, 0.0, reason_code, properties or NO_PROPERTIES)
        )

    async def reauthenticate(self) -> None:
        """Start MQTT 5 re-authentication with the configured authenticator."""
        await self._control.send(ReauthRequest())
