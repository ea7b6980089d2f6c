"""The client handle: a cloneable sender of requests to the event loop.

A :class:`Client` holds the event loop's admission object (publishes enter the state machine
in the caller's task, waiting while the outgoing window is full: natural backpressure) and a
Trio memory send channel for everything else (subscribe, unsubscribe, acks, disconnect), which
the loop always takes, so an ack or a subscribe is never stuck behind a full window.
``clone()`` clones the channel; when every clone is closed the event loop sees the channel end
and the connection finishes with :class:`~trio_mqtt.RequestsDone`.

Arguments are validated here, in the caller's task, so a bad topic raises at the call site;
publishes are admitted by the loop's :class:`~trio_mqtt._admission.Admission`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType

import trio

from ._admission import Admission
from ._core._errors import ConnectionClosed, InvalidOptionError, MqttError
from ._core._packets import (
    NO_PROPERTIES,
    Properties,
    Publish,
    QoS,
    RetainHandling,
    Subscription,
)
from ._core._topics import validate_filter
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

__all__ = ["Client", "SubscriptionRefused"]

Payload = bytes | bytearray | memoryview | str


class SubscriptionRefused(MqttError):
    """The broker refused a subscription (SUBACK code 0x80 or above); the SUBSCRIBE was sent.

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

    Every blocking method has a ``*_nowait`` twin that takes the same arguments and raises
    :class:`trio.WouldBlock` instead of waiting for queue room (where the blocking method
    returns the broker's answer, the twin returns a :class:`Tracker` for it). Handles are
    cheap: :meth:`clone` one per task, and close each when done (``async with client:`` does
    it). Every request is checked in the calling task, so a bad one raises at its call site;
    one made after the session ended, or while a failed connection waits for the application
    to reconnect, raises that error at once.
    """

    __slots__ = ("_admission", "_closed", "_control")

    def __init__(
        self,
        admission: Admission | None = None,
        control_channel: trio.MemorySendChannel[Request] | None = None,
    ) -> None:
        if not isinstance(admission, Admission) or not isinstance(
            control_channel, trio.MemorySendChannel
        ):
            raise TypeError(
                "Client handles are not built by hand: use `async with "
                "open_mqtt_connection(...) as conn:` and `conn.client` (or `.clone()` it)"
            )
        self._admission = admission
        self._control = control_channel
        self._closed = False

    # ------------------------------------------------------------------ handles
    def clone(self) -> Client:
        """Another handle to the same connection; the connection lives while any is open."""
        self._check_handle()
        return Client(self._admission, self._control.clone())

    def close(self) -> None:
        """Release this handle (idempotent)."""
        if not self._closed:
            self._closed = True
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

    def _check_handle(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this client handle is closed")

    def _check_request(self, request: Request) -> None:
        # a disconnect is taken in every phase; acks go out after a reconnect
        if not isinstance(request, DisconnectRequest):
            waits = not isinstance(request, AckRequest)
            self._admission.check_open(waits_for_answer=waits)

    async def _send(self, request: Request) -> None:
        """Queue a control request in the caller's task (it may wait for queue room)."""
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled call sends nothing
        self._check_handle()
        self._check_request(request)
        try:
            await self._control.send(request)
        except trio.BrokenResourceError:
            self._admission.check_open()  # the session ended while we waited: say how
            raise ConnectionClosed("the connection is closed") from None

    def _send_nowait(self, request: Request) -> None:
        self._check_handle()
        self._check_request(request)
        try:
            self._control.send_nowait(request)
        except trio.BrokenResourceError:
            self._admission.check_open()
            raise ConnectionClosed("the connection is closed") from None

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
        self._check_handle()
        return PublishRequest(
            topic,
            _payload_bytes(payload),
            _qos(qos),
            bool(retain),
            properties if properties is not None else NO_PROPERTIES,
            tracker,
        )

    async def publish(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> None:
        """Hand a message to the session; returns once it is admitted.

        Waits while the outgoing window (and the queue behind it) is full: the natural
        backpressure. Invalid topics, QoS values and sizes raise here, before anything is
        admitted. Use :meth:`publish_tracked` to learn when the broker has the message.
        """
        await self._admission.submit(
            self._publish_request(topic, payload, qos, retain, properties, None)
        )

    def publish_nowait(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> None:
        """Like :meth:`publish`, but raise :class:`trio.WouldBlock` instead of waiting."""
        self._admission.submit_nowait(
            self._publish_request(topic, payload, qos, retain, properties, None)
        )

    async def publish_tracked(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> Tracker[PublishResult]:
        """Hand a message to the session and return a tracker whose ``wait()`` gives the
        broker's answer.

        The tracker completes when QoS 0 is written, on PUBACK for QoS 1 and on PUBCOMP (or a
        failing PUBREC) for QoS 2. If the connection fails and nobody reconnects it (no
        reconnect policy, or the policy gave up), the tracker reports that error; a QoS 1/2
        message stays in the session all the same and is sent again after a reconnect.
        """
        tracker: Tracker[PublishResult] = Tracker()
        await self._admission.submit(
            self._publish_request(topic, payload, qos, retain, properties, tracker)
        )
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
        """Like :meth:`publish_tracked`, but raise :class:`trio.WouldBlock` instead of waiting."""
        tracker: Tracker[PublishResult] = Tracker()
        self._admission.submit_nowait(
            self._publish_request(topic, payload, qos, retain, properties, tracker)
        )
        return tracker

    # ------------------------------------------------------------------ subscribe
    def _subscribe_request(
        self,
        subscriptions: Iterable[Subscription | str | tuple[str, int]],
        properties: Properties | None,
    ) -> SubscribeRequest:
        self._check_handle()
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
            elif not isinstance(item, Subscription):
                raise TypeError(
                    f"a subscription is a filter, a (filter, qos) pair or a Subscription, "
                    f"not {type(item).__name__}"
                )
            _check_filter(item.topic_filter)
            items.append(item)
        if not items:
            raise InvalidOptionError("subscribe needs at least one topic filter")
        return SubscribeRequest(
            tuple(items), properties if properties is not None else NO_PROPERTIES, Tracker()
        )

    @staticmethod
    def _one_subscription(
        topic_filter: str,
        qos: int,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: RetainHandling,
    ) -> Subscription:
        return Subscription(topic_filter, _qos(qos), no_local, retain_as_published, retain_handling)

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
            ConnectionLost: the connection failed before the SUBACK and nobody reconnects it
                (with a reconnect policy the SUBSCRIBE is sent again after reconnecting).
        """
        subscription = self._one_subscription(
            topic_filter, qos, no_local, retain_as_published, retain_handling
        )
        result = await self.subscribe_many([subscription], properties=properties)
        if not result.is_success:
            raise SubscriptionRefused(result)
        return result

    def subscribe_nowait(
        self,
        topic_filter: str,
        qos: int = QoS.AT_MOST_ONCE,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE,
        properties: Properties | None = None,
    ) -> Tracker[SubscribeResult]:
        """Queue a SUBSCRIBE for one filter or raise :class:`trio.WouldBlock`.

        Returns a tracker for the SUBACK; a refusal is reported in its codes, not raised.
        """
        subscription = self._one_subscription(
            topic_filter, qos, no_local, retain_as_published, retain_handling
        )
        return self.subscribe_many_nowait([subscription], properties=properties)

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
        request = self._subscribe_request(subscriptions, properties)
        await self._send(request)
        assert request.tracker is not None
        return await request.tracker.wait()

    def subscribe_many_nowait(
        self,
        subscriptions: Sequence[Subscription | str | tuple[str, int]],
        *,
        properties: Properties | None = None,
    ) -> Tracker[SubscribeResult]:
        """Queue a SUBSCRIBE for several filters or raise :class:`trio.WouldBlock`."""
        request = self._subscribe_request(subscriptions, properties)
        self._send_nowait(request)
        assert request.tracker is not None
        return request.tracker

    # ------------------------------------------------------------------ unsubscribe
    def _unsubscribe_request(
        self, topic_filters: Sequence[str], properties: Properties | None
    ) -> UnsubscribeRequest:
        self._check_handle()
        if isinstance(topic_filters, str):
            topic_filters = [topic_filters]
        for topic_filter in topic_filters:
            _check_filter(topic_filter)
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

    def unsubscribe_nowait(
        self, topic_filter: str, *, properties: Properties | None = None
    ) -> Tracker[UnsubscribeResult]:
        """Queue an UNSUBSCRIBE for one filter or raise :class:`trio.WouldBlock`."""
        return self.unsubscribe_many_nowait([topic_filter], properties=properties)

    async def unsubscribe_many(
        self, topic_filters: Sequence[str], *, properties: Properties | None = None
    ) -> UnsubscribeResult:
        """Unsubscribe from several filters in one UNSUBSCRIBE and wait for the UNSUBACK."""
        request = self._unsubscribe_request(topic_filters, properties)
        await self._send(request)
        assert request.tracker is not None
        return await request.tracker.wait()

    def unsubscribe_many_nowait(
        self, topic_filters: Sequence[str], *, properties: Properties | None = None
    ) -> Tracker[UnsubscribeResult]:
        """Queue an UNSUBSCRIBE for several filters or raise :class:`trio.WouldBlock`."""
        request = self._unsubscribe_request(topic_filters, properties)
        self._send_nowait(request)
        assert request.tracker is not None
        return request.tracker

    # ------------------------------------------------------------------ acks
    def _ack_request(self, message: Publish | int, reason_code: int) -> AckRequest:
        self._check_handle()
        packet_id = message.packet_id if isinstance(message, Publish) else message
        if not 1 <= packet_id <= 65535:
            raise InvalidOptionError("only QoS 1/2 publishes (packet id 1-65535) are acked")
        self._admission.check_ack(packet_id, reason_code)
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
        await self._send(request)
        await tracker.wait()

    def ack_nowait(self, message: Publish | int, reason_code: int = 0) -> None:
        """Like :meth:`ack`, but raise :class:`trio.WouldBlock` when the queue is full."""
        self._send_nowait(self._ack_request(message, reason_code))

    # ------------------------------------------------------------------ disconnect
    def _disconnect_request(
        self, grace_period: float, reason_code: int, properties: Properties | None
    ) -> DisconnectRequest | None:
        """The request, or None when the session has ended already (nothing to do)."""
        self._check_handle()
        if not grace_period >= 0:
            raise InvalidOptionError(f"grace_period must be >= 0, got {grace_period!r}")
        if self._admission.has_ended():
            return None
        self._admission.check_disconnect(reason_code, properties)
        return DisconnectRequest(grace_period, reason_code, properties or NO_PROPERTIES, Tracker())

    async def disconnect(
        self,
        grace_period: float = 5.0,
        *,
        reason_code: int = 0,
        properties: Properties | None = None,
    ) -> None:
        """Disconnect gracefully and wait until it is done.

        QoS 1/2 flows in flight get up to ``grace_period`` seconds to finish (0 disconnects at
        once), then DISCONNECT is sent and the connection closes. Unfinished flows stay in the
        session state. Does nothing once the session has ended.

        Raises:
            LocalProtocolError: the reason code or properties are not allowed (for example a
                session expiry interval when CONNECT had none); nothing changes.
        """
        request = self._disconnect_request(grace_period, reason_code, properties)
        if request is None:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._send(request)
        except ConnectionClosed:
            return  # ended meanwhile: that is what was asked for
        assert request.tracker is not None
        await request.tracker.wait()

    def disconnect_nowait(
        self,
        grace_period: float = 5.0,
        *,
        reason_code: int = 0,
        properties: Properties | None = None,
    ) -> None:
        """Like :meth:`disconnect`, but only start it; raise :class:`trio.WouldBlock` when the
        queue is full."""
        request = self._disconnect_request(grace_period, reason_code, properties)
        if request is not None:
            self._send_nowait(request)

    # ------------------------------------------------------------------ re-authentication
    def _reauth_request(self) -> ReauthRequest:
        self._check_handle()
        self._admission.check_reauthenticate()
        return ReauthRequest(Tracker())

    async def reauthenticate(self) -> None:
        """Re-authenticate (MQTT 5) with the configured authenticator; wait for the outcome.

        Returns once the broker answered with AUTH success.

        Raises:
            LocalProtocolError: not MQTT 5, no authenticator, not connected, or already under
                way.
            ConnectionLost: the connection ended first (a broker that refuses the new
                credentials disconnects: :class:`DisconnectedByBroker`).
        """
        request = self._reauth_request()
        await self._send(request)
        assert request.tracker is not None
        await request.tracker.wait()

    def reauthenticate_nowait(self) -> Tracker[None]:
        """Start re-authentication or raise :class:`trio.WouldBlock`; returns its tracker."""
        request = self._reauth_request()
        self._send_nowait(request)
        assert request.tracker is not None
        return request.tracker


def _check_filter(topic_filter: str) -> None:
    if type(topic_filter) is not str:
        raise TypeError(f"a topic filter must be a str, not {type(topic_filter).__name__}")
    validate_filter(topic_filter)
