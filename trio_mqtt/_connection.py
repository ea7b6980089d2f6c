"""The public face of a session: ``open_mqtt_connection`` and :class:`MqttConnection`.

The work happens in :class:`~trio_mqtt._eventloop.EventLoop`; this module is what users touch:
reading events, routes, statistics, and the context manager that owns the nursery and makes
sure no internal ``ExceptionGroup`` reaches the caller.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import trio

from ._client import Client
from ._core._errors import ConnectionClosed, InvalidOptionError, MqttError, RequestsDone
from ._core._events import ConnectionEvent, Incoming
from ._core._packets import ConnAck, Publish
from ._core._topics import validate_filter
from ._dispatch import Failure, MessageStream, Overflow
from ._eventloop import EventLoop, group_leaves
from ._options import MqttOptions
from ._statistics import ConnectionStatistics

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["ConnectionStatistics", "MqttConnection", "open_mqtt_connection"]


class MqttConnection:
    """A running MQTT session, created by :func:`open_mqtt_connection`.

    Iterate it (``async for event in conn``) or call :meth:`poll` for every event, use
    :meth:`messages` for incoming publishes only, :meth:`route` to hand the publishes of one
    filter to a task, and :attr:`client` to send requests.
    """

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._reconnect_on_next_poll = False

    # ================================================================= public API
    @property
    def options(self) -> MqttOptions:
        """The options of the current (or last) connection attempt.

        They start as the options given to :func:`open_mqtt_connection`; a server list or a
        ``before_connect`` hook changes them before each attempt.
        """
        return self._loop.options

    @property
    def client(self) -> Client:
        """The first client handle; :meth:`Client.clone` it for other tasks."""
        return self._loop.client

    @property
    def connected(self) -> bool:
        """True while a network connection is up and CONNACK was received."""
        return self._loop.connected

    @property
    def connack(self) -> ConnAck | None:
        """The broker's CONNACK for the current (or last) connection.

        It says whether the session was resumed and, for MQTT 5, carries the limits the broker
        announced in its properties.
        """
        return self._loop.connack

    async def poll(self) -> ConnectionEvent:
        """Return the next event, waiting for one.

        Events are :class:`~trio_mqtt.Incoming` (a packet from the broker),
        :class:`~trio_mqtt.Outgoing` (a packet sent), :class:`~trio_mqtt.Disconnected`,
        :class:`~trio_mqtt.Reconnecting`, :class:`~trio_mqtt.SessionLost` and
        :class:`~trio_mqtt.PublishDropped`.

        Raises:
            ConnectionLost: (and its subclasses) the connection failed and no reconnect policy
                is set; the next ``poll()`` reconnects.
            ConnectionRefused: a reconnect was refused; the next ``poll()`` tries again.
            ConnectionClosed: the connection was closed locally; it stays closed.
            RequestsDone: every client handle was closed.
        """
        if self._reconnect_on_next_poll:
            self._reconnect_on_next_poll = False
            self.reconnect()
        item = await self._loop.next_event()
        if isinstance(item, Failure):
            self._reconnect_on_next_poll = True
            raise item.error
        return item  # type: ignore[return-value]

    def poll_nowait(self) -> ConnectionEvent:
        """Return the next buffered event without waiting.

        Raises:
            trio.WouldBlock: no event is buffered.
            MqttError: as :meth:`poll` does.
        """
        if self._reconnect_on_next_poll:
            self._reconnect_on_next_poll = False
            self.reconnect()
        item = self._loop.next_event_nowait()
        if isinstance(item, Failure):
            self._reconnect_on_next_poll = True
            raise item.error
        return item  # type: ignore[return-value]

    def reconnect(self) -> None:
        """Start reconnecting after a connection error (without a reconnect policy).

        ``poll()`` does this by itself on the call after the one that raised; use this when the
        application only reads routes. Does nothing while connected or reconnecting.
        """
        self._loop.request_reconnect()

    def __aiter__(self) -> MqttConnection:
        return self

    async def __anext__(self) -> ConnectionEvent:
        try:
            return await self.poll()
        except (ConnectionClosed, RequestsDone):
            raise StopAsyncIteration from None

    def messages(self) -> AsyncIterator[Publish]:
        """Iterate over incoming publishes only (other events are consumed and skipped)."""
        return _Messages(self)

    def message_batches(self, max_batch: int = 1000) -> AsyncIterator[list[Publish]]:
        """Like :meth:`messages`, but yield lists: each waits for one message, then takes every
        message already buffered with it (at most ``max_batch``).

        One scheduling pass per batch instead of one per message: at high message rates this
        is the cheapest way to consume (see :doc:`/backpressure`). A connection error that
        follows a batch is raised by the next step, so no message is lost behind it.
        """
        if max_batch < 1:
            raise InvalidOptionError("max_batch must be at least 1")
        return _MessageBatches(self, max_batch)

    @asynccontextmanager
    async def route(
        self,
        topic_filter: str,
        *,
        qos: int | None = None,
        capacity: int = 100,
        overflow: Overflow = "wait",
    ) -> AsyncIterator[MessageStream]:
        """Hand every incoming publish matching ``topic_filter`` to a :class:`MessageStream`.

        Args:
            topic_filter: an MQTT filter (``$share/group/filter`` matches as ``filter``).
            qos: when given, subscribe to the filter with this QoS on entry (waiting for the
                SUBACK) and unsubscribe on exit unless another route still uses the filter.
            capacity: messages buffered for this route.
            overflow: what happens when the buffer is full: ``"wait"`` (the reader pauses,
                which applies TCP backpressure to the broker), ``"drop_oldest"`` or
                ``"drop_newest"`` (counted in :attr:`MessageStream.dropped`).

        A message matching several routes goes to each of them once; a message matching none
        stays on the event stream as an ``Incoming`` event.
        """
        validate_filter(topic_filter)
        if capacity < 1:
            raise InvalidOptionError("route capacity must be at least 1")
        if overflow not in ("wait", "drop_oldest", "drop_newest"):
            raise InvalidOptionError(f"unknown overflow policy {overflow!r}")
        loop = self._loop
        route = loop.open_route(topic_filter, capacity, overflow)
        subscribed = False
        try:
            if qos is not None:
                await loop.client.subscribe(topic_filter, qos)
                subscribed = True
            yield MessageStream(route, loop.client.ack if self.options.manual_acks else None)
        finally:
            still_used = loop.close_route(route)
            if subscribed and not still_used and loop.end is None:
                with trio.move_on_after(self.options.connect_timeout) as scope:
                    scope.shield = True
                    # a failed connection has no subscription left to remove on this link
                    with contextlib.suppress(MqttError):
                        await loop.client.unsubscribe(topic_filter)

    def statistics(self) -> ConnectionStatistics:
        """Counters for monitoring: window use, queues, buffers, traffic."""
        return self._loop.statistics()


class _Messages:
    """Async iterator over incoming publishes (see :meth:`MqttConnection.messages`).

    Other events are taken from the buffer and skipped without a scheduling pass each, and
    they do not wake a waiting iterator: a QoS 2 message (four events) costs one wakeup and
    one schedule point, not four.
    """

    def __init__(self, connection: MqttConnection) -> None:
        self._connection = connection

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> Publish:
        connection = self._connection
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        try:
            while True:
                try:
                    event = connection.poll_nowait()
                except trio.WouldBlock:
                    # nothing buffered: this parks (a schedule point) until a message comes
                    await connection._loop.wait_for_message()
                    waited = True
                    continue
                if type(event) is Incoming and type(event.packet) is Publish:
                    if not waited:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return event.packet
        except (ConnectionClosed, RequestsDone):
            raise StopAsyncIteration from None


class _MessageBatches:
    """Async iterator over lists of publishes (see :meth:`MqttConnection.message_batches`)."""

    def __init__(self, connection: MqttConnection, max_batch: int) -> None:
        self._first = _Messages(connection)
        self._loop = connection._loop
        self._max_batch = max_batch

    def __aiter__(self) -> _MessageBatches:
        return self

    async def __anext__(self) -> list[Publish]:
        batch = [await self._first.__anext__()]
        self._loop.take_messages(batch, self._max_batch - 1)
        return batch


@asynccontextmanager
async def open_mqtt_connection(
    options: MqttOptions | str,
    *,
    event_capacity: int = 1000,
    disconnect_timeout: float = 5.0,
    drop_unread: bool = False,
) -> AsyncIterator[MqttConnection]:
    """Connect to a broker and run the session for the duration of the ``async with`` block.

    Args:
        options: an :class:`MqttOptions`, or a URL for :meth:`MqttOptions.from_url`.
        event_capacity: events buffered for :meth:`MqttConnection.poll` (see
            :doc:`/backpressure` for what happens when nobody reads them).
        disconnect_timeout: seconds that leaving the block may spend letting inflight QoS 1/2
            flows finish and sending DISCONNECT (shielded from cancellation).
        drop_unread: until the application reads its first event, keep only the newest
            ``event_capacity`` incoming messages (dropping the oldest, counted in
            ``dropped_events`` and logged) instead of pausing the connection. For programs
            that may never read events; off by default, so no message is ever dropped.

    The first connection attempt happens on entry: a refusal or failure raises here (with a
    reconnect policy, after its attempts are used up). Leaving the block normally disconnects
    gracefully; leaving it with an exception, or cancelling it, closes the connection at once
    and lets the exception through unchanged. Errors of internal tasks are raised as one
    :class:`MqttError`, never as an ``ExceptionGroup``.
    """
    if isinstance(options, str):
        options = MqttOptions.from_url(options)
    assert isinstance(options, MqttOptions)
    loop = EventLoop(options, event_capacity=event_capacity, drop_unread=drop_unread)
    connection = MqttConnection(loop)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await loop.run(nursery)
            try:
                yield connection
            except BaseException as exc:
                body_error = exc
                raise
            else:
                await loop.close(disconnect_timeout)
            finally:
                loop.finish()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _raise_single(group, body_error)


def _raise_single(
    group: BaseExceptionGroup[BaseException], body_error: BaseException | None
) -> NoReturn:
    """Turn the nursery's exception group into the one exception the user should see."""
    leaves = group_leaves(group)
    if body_error is not None and not isinstance(body_error, trio.Cancelled):
        raise body_error from body_error.__cause__
    internal = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    if internal:
        error = internal[0]
        if isinstance(error, MqttError):
            raise error from error.__cause__
        raise MqttError(f"internal error in trio-mqtt: {error!r}") from error
    raise leaves[0] from None
