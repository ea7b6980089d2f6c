"""The blocking client handle of :mod:`trio_mqtt.sync`."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

from .. import _client
from .._core._errors import ConnectionClosed
from .._core._packets import Properties, Publish, QoS, RetainHandling, Subscription
from .._requests import PublishResult, SubscribeResult, UnsubscribeResult
from ._loop import Tracker, _Loop

__all__ = ["Client"]

T = TypeVar("T")

Payload = bytes | bytearray | memoryview | str
SubscriptionSpec = Subscription | str | tuple[str, int]


class Client:
    """Sends requests to the connection from any thread. Get one from :func:`connect`.

    Every method blocks the calling thread until the request is queued (or, where the async
    method waits for the broker's answer, until it came). The ``*_nowait`` twins never block:
    they raise :class:`trio.WouldBlock` when the request queue is full. Use :meth:`clone` to
    give each thread its own handle (sharing one is also safe); when every handle is closed
    (or garbage collected) the connection ends with :class:`~trio_mqtt.RequestsDone` and
    iterating the :class:`Connection` stops. ``with client:`` closes the handle on exit.

    Calls made after the connection has ended raise :class:`~trio_mqtt.ConnectionClosed`;
    calls on a closed handle raise :class:`trio.ClosedResourceError`.
    """

    __slots__ = ("__weakref__", "_closed", "_finalizer", "_handle", "_loop")

    def __init__(self, loop: _Loop, handle: _client.Client) -> None:
        self._loop = loop
        self._handle = handle
        self._closed = False
        # a handle dropped without close() is released all the same, so that RequestsDone fires
        self._finalizer = weakref.finalize(self, loop.call_soon, handle.close)

    # ------------------------------------------------------------------ handles
    def clone(self) -> Client:
        """Another handle to the same connection; the session lives while any is open."""
        return Client(self._loop, self._loop.run_sync(self._handle.clone))

    def close(self) -> None:
        """Release this handle (idempotent; does nothing once the connection has ended)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        with contextlib.suppress(ConnectionClosed):
            self._loop.run_sync(self._handle.close)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called on this handle."""
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ publish
    def publish(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> None:
        """Queue a message for publishing; returns once the connection has taken it.

        Blocks while the request queue (and the outgoing window behind it) is full, and, with
        a durable session store, until a QoS 1/2 message is committed to it. Invalid topics,
        QoS values and sizes raise here, before anything is queued.
        """
        self._publish_call(
            self._handle.publish_nowait,
            self._handle.publish,
            topic,
            payload,
            qos,
            retain,
            properties=properties,
        )

    def _publish_call(
        self,
        fn: Callable[..., T],
        afn: Callable[..., Awaitable[T]],
        topic: str,
        payload: Payload,
        qos: int,
        retain: bool,
        *,
        properties: Properties | None,
    ) -> T:
        """Run a blocking publish: the ``*_nowait`` twin first when it gives the same result
        (cheaper), the async method when it must wait (a durable store's commit)."""
        connection = self._loop.connection
        store = None if connection is None else connection.options.session_store
        if qos and store is not None and store.durable:
            return self._loop.run(afn, topic, payload, qos, retain, properties=properties)
        return self._loop.run_nowait_first(
            fn, afn, topic, payload, qos, retain, properties=properties
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
        """Like :meth:`publish`, but raise :class:`trio.WouldBlock` when the queue is full."""
        self._loop.run_sync(
            self._handle.publish_nowait, topic, payload, qos, retain, properties=properties
        )

    def publish_tracked(
        self,
        topic: str,
        payload: Payload = b"",
        qos: int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> Tracker[PublishResult]:
        """Queue a message and return a :class:`Tracker` for the broker's answer.

        The tracker completes when QoS 0 is written, on PUBACK for QoS 1 and on PUBCOMP (or a
        failing PUBREC) for QoS 2.
        """
        tracker = self._publish_call(
            self._handle.publish_tracked_nowait,
            self._handle.publish_tracked,
            topic,
            payload,
            qos,
            retain,
            properties=properties,
        )
        return Tracker(self._loop, tracker)

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
        tracker = self._loop.run_sync(
            self._handle.publish_tracked_nowait, topic, payload, qos, retain, properties=properties
        )
        return Tracker(self._loop, tracker)

    # ------------------------------------------------------------------ subscribe
    def subscribe(
        self,
        topic_filter: str,
        qos: int = QoS.AT_MOST_ONCE,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE,
        properties: Properties | None = None,
    ) -> SubscribeResult:
        """Subscribe to one filter and block until the SUBACK.

        Raises:
            ~trio_mqtt.SubscriptionRefused: the broker answered with a failure code.
            ~trio_mqtt.InvalidTopicError: the filter is not valid.
        """
        return self._loop.run(
            self._handle.subscribe,
            topic_filter,
            qos,
            no_local=no_local,
            retain_as_published=retain_as_published,
            retain_handling=retain_handling,
            properties=properties,
        )

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

        Returns a :class:`Tracker` for the SUBACK (refusals are reported in its codes).
        """
        tracker = self._loop.run_sync(
            self._handle.subscribe_nowait,
            topic_filter,
            qos,
            no_local=no_local,
            retain_as_published=retain_as_published,
            retain_handling=retain_handling,
            properties=properties,
        )
        return Tracker(self._loop, tracker)

    def subscribe_many(
        self,
        subscriptions: Sequence[SubscriptionSpec],
        *,
        properties: Properties | None = None,
    ) -> SubscribeResult:
        """Subscribe to several filters in one SUBSCRIBE and block until the SUBACK.

        Each item is a :class:`~trio_mqtt.Subscription`, a filter (QoS 0) or a
        ``(filter, qos)`` pair. Returns one code per filter without raising for refused ones.
        """
        return self._loop.run(
            self._handle.subscribe_many, list(subscriptions), properties=properties
        )

    def subscribe_many_nowait(
        self,
        subscriptions: Sequence[SubscriptionSpec],
        *,
        properties: Properties | None = None,
    ) -> Tracker[SubscribeResult]:
        """Queue a SUBSCRIBE for several filters or raise :class:`trio.WouldBlock`."""
        tracker = self._loop.run_sync(
            self._handle.subscribe_many_nowait, list(subscriptions), properties=properties
        )
        return Tracker(self._loop, tracker)

    # ------------------------------------------------------------------ unsubscribe
    def unsubscribe(
        self, topic_filter: str, *, properties: Properties | None = None
    ) -> UnsubscribeResult:
        """Unsubscribe from one filter and block until the UNSUBACK."""
        return self.unsubscribe_many([topic_filter], properties=properties)

    def unsubscribe_many(
        self, topic_filters: Sequence[str], *, properties: Properties | None = None
    ) -> UnsubscribeResult:
        """Unsubscribe from several filters in one UNSUBSCRIBE and block until the UNSUBACK."""
        return self._loop.run(
            self._handle.unsubscribe_many, list(topic_filters), properties=properties
        )

    def unsubscribe_nowait(
        self, topic_filter: str, *, properties: Properties | None = None
    ) -> Tracker[UnsubscribeResult]:
        """Queue an UNSUBSCRIBE or raise :class:`trio.WouldBlock`; returns its tracker."""
        tracker = self._loop.run_sync(
            self._handle.unsubscribe_nowait, topic_filter, properties=properties
        )
        return Tracker(self._loop, tracker)

    def unsubscribe_many_nowait(
        self, topic_filters: Sequence[str], *, properties: Properties | None = None
    ) -> Tracker[UnsubscribeResult]:
        """Queue an UNSUBSCRIBE for several filters or raise :class:`trio.WouldBlock`."""
        tracker = self._loop.run_sync(
            self._handle.unsubscribe_many_nowait, list(topic_filters), properties=properties
        )
        return Tracker(self._loop, tracker)

    # ------------------------------------------------------------------ acks
    def ack(self, message: Publish | int, reason_code: int = 0) -> None:
        """Acknowledge an incoming QoS 1/2 publish (``manual_acks=True``): PUBACK or PUBREC."""
        self._loop.run_nowait_first(self._handle.ack_nowait, self._handle.ack, message, reason_code)

    def ack_nowait(self, message: Publish | int, reason_code: int = 0) -> None:
        """Like :meth:`ack`, but raise :class:`trio.WouldBlock` when the queue is full."""
        self._loop.run_sync(self._handle.ack_nowait, message, reason_code)

    # ------------------------------------------------------------------ disconnect
    def disconnect(
        self,
        grace_period: float = 5.0,
        *,
        reason_code: int = 0,
        properties: Properties | None = None,
    ) -> None:
        """Disconnect gracefully and block until it is done.

        QoS 1/2 flows in flight get up to ``grace_period`` seconds to finish, then DISCONNECT
        is sent and the connection closes; iterating the :class:`Connection` then ends.
        """
        self._loop.run(
            self._handle.disconnect,
            grace_period,
            reason_code=reason_code,
            properties=properties,
        )

    def disconnect_nowait(
        self,
        grace_period: float = 5.0,
        *,
        reason_code: int = 0,
        properties: Properties | None = None,
    ) -> None:
        """Like :meth:`disconnect`, but only start it; raise :class:`trio.WouldBlock` when the
        queue is full."""
        self._loop.run_sync(
            self._handle.disconnect_nowait,
            grace_period,
            reason_code=reason_code,
            properties=properties,
        )

    def reauthenticate(self) -> None:
        """Re-authenticate (MQTT 5) and block until the broker accepted it (or raise)."""
        self._loop.run(self._handle.reauthenticate)

    def reauthenticate_nowait(self) -> Tracker[None]:
        """Start re-authentication or raise :class:`trio.WouldBlock`; returns its tracker."""
        return Tracker(self._loop, self._loop.run_sync(self._handle.reauthenticate_nowait))
