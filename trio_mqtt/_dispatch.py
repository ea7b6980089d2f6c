"""Where events and messages wait for the application: the event buffer and per-topic routes.

Theory of operation. Any task that calls into the state machine (reader, writer-side intake
tasks, keepalive) collects the events it produced and puts them here synchronously, without
blocking: protocol progress never waits for the application. Only the reader applies
backpressure: after each received chunk it checks whether a buffer that wants backpressure is
full and, if so, stops reading (telling the state machine, so that a slow consumer is never
mistaken for a dead link) until the application makes room. Bounds:

* The event buffer never drops an incoming message: when it holds ``capacity`` unread
  messages the reader pauses until the application reads some. Other events (Outgoing, acks,
  reconnect notices) never make anything wait: past ``capacity`` buffered events (twice that
  once the application has started reading events) the newest are dropped and counted. So a
  program that only publishes, or only uses routes, runs forever in bounded memory, and one
  that reads its messages late still gets every one of them.
* Each route holds ``capacity`` messages. With ``overflow="wait"`` (default) the reader pauses
  when it is full; ``"drop_oldest"`` and ``"drop_newest"`` drop and count instead.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import trio

from ._core._errors import ConnectionClosed, InvalidOptionError, MqttError, RequestsDone
from ._core._events import Incoming
from ._core._packets import Publish
from ._handlers import Acknowledge, ErrorPolicy, Handler, KeyFunction, run_ordered

__all__ = ["EventBuffer", "Failure", "MessageStream", "Overflow", "Route", "Signal"]

T = TypeVar("T")
logger = logging.getLogger("trio_mqtt")
Overflow = Literal["wait", "drop_oldest", "drop_newest"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Internal marker: a connection error the application must see (no reconnect policy)."""

    error: MqttError


class Signal:
    """A level-triggered wakeup for one waiting task: ``set()`` wakes it or makes the next
    ``wait()`` return at once. Cheaper than making a new ``trio.Event`` each time."""

    __slots__ = ("_flag", "_lot")

    def __init__(self) -> None:
        self._flag = False
        #: made on the first wait: most signals of an idle connection are never waited on
        self._lot: trio.lowlevel.ParkingLot | None = None

    def set(self) -> None:
        """Wake the waiter (or the next one to wait)."""
        self._flag = True
        if self._lot:
            self._lot.unpark_all()

    def clear(self) -> None:
        """Forget an earlier :meth:`set` (the waiter is about to look for itself)."""
        self._flag = False

    async def wait(self) -> None:
        """Wait until :meth:`set` was called since the last wait returned."""
        if self._flag:
            self._flag = False
            await trio.lowlevel.checkpoint()
            return
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        await self._lot.park()
        self._flag = False


class _Buffer(Generic[T]):
    """A deque of items with waiting readers and an end marker."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[T | Failure] = deque()
        self.dropped = 0
        self.end: MqttError | None = None
        self._readable = trio.lowlevel.ParkingLot()

    def _wake_readers(self) -> None:
        if self._readable:
            self._readable.unpark_all()

    def close(self, end: MqttError) -> None:
        """No more items will come; readers get ``end`` once the buffer is drained."""
        if self.end is None:
            self.end = end
        self._wake_readers()

    async def _get(self) -> T | Failure:
        # Same cancellation contract as a Trio channel: a cancelled call took nothing, and
        # once an item is taken nothing can cancel the call. Several readers may wait at once.
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.items:
            while not self.items:
                if self.end is not None:
                    raise self.end
                await self._readable.park()
            return self.items.popleft()  # parking was this call's schedule point
        item = self.items.popleft()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item


class EventBuffer(_Buffer[object]):
    """The connection's event stream (see the module docstring for its bounds)."""

    def __init__(self, capacity: int, space: Signal, *, drop_unread: bool = False) -> None:
        super().__init__(capacity)
        self.consuming = False
        #: incoming messages (``Incoming(Publish)``) in the buffer
        self.unread_messages = 0
        #: messages dropped because nobody had read any event yet (``drop_unread``)
        self.dropped_messages = 0
        self._drop_unread = drop_unread
        self._space = space
        #: connection errors in the buffer (``Failure`` items)
        self._failures = 0
        #: tasks in :meth:`wait_for_message` (``messages()``): woken by messages only
        self._message_readers = trio.lowlevel.ParkingLot()

    def put(self, item: object, *, data: bool = False) -> None:
        """Add an event; ``data`` marks incoming messages.

        Messages are never dropped, except with ``drop_unread`` while the application has
        not read any event yet: then only the newest ``capacity`` are kept. While the only
        waiting readers are ``messages()`` iterators, another event is consumed on the spot:
        they would wake only to skip it.
        """
        items = self.items
        if data:
            if self._drop_unread and not self.consuming and self.unread_messages >= self.capacity:
                self._drop_oldest_message()
            self.unread_messages += 1
            items.append(item)
            if self._message_readers:
                self._message_readers.unpark_all()
        else:
            if self._message_readers and not self._readable:
                return
            if len(items) >= (2 * self.capacity if self.consuming else self.capacity):
                self.dropped += 1
                return
            items.append(item)
        if self._readable:
            self._readable.unpark_all()

    def _wake_readers(self) -> None:
        super()._wake_readers()
        if self._message_readers:
            self._message_readers.unpark_all()

    async def wait_for_message(self) -> None:
        """Wait until a message, a connection error or the end is buffered.

        Not a checkpoint when one already is (the caller checkpoints then); otherwise the
        wait is the schedule point. Other events do not wake this task.
        """
        self.consuming = True
        while not (self.unread_messages or self._failures or self.end is not None):
            await self._message_readers.park()

    def _drop_oldest_message(self) -> None:
        items = self.items
        for index, item in enumerate(items):
            if type(item) is Incoming and type(item.packet) is Publish:
                del items[index]
                break
        self.unread_messages -= 1
        self.dropped_messages += 1
        self.dropped += 1
        if self.dropped_messages == 1 or self.dropped_messages % 10000 == 0:
            logger.warning(
                "%d incoming messages dropped so far: nothing reads the connection's events "
                "(read them, or open routes for their topics, to receive every message)",
                self.dropped_messages,
            )

    def put_failure(self, error: MqttError) -> None:
        """Queue a connection error for ``poll()``; never dropped."""
        self.items.append(Failure(error))
        self._failures += 1
        self._wake_readers()

    @property
    def full(self) -> bool:
        """True when the reader should pause until the application reads messages.

        Never with ``drop_unread`` before the first read: the oldest messages make room.
        """
        if self._drop_unread and not self.consuming:
            return False
        return self.unread_messages >= self.capacity

    def _taken(self, item: object) -> None:
        if type(item) is Incoming and type(item.packet) is Publish:
            self.unread_messages -= 1
            if self.unread_messages < self.capacity:
                self._space.set()
        elif type(item) is Failure:
            self._failures -= 1

    async def get(self) -> object:
        """The next event; raises the end error once closed and drained."""
        self.consuming = True
        item = await self._get()
        self._taken(item)
        return item

    def take_messages(self, out: list[Publish], limit: int) -> None:
        """Move up to ``limit`` buffered incoming messages to ``out``, without waiting.

        Other events before and between them are consumed and skipped (as
        :meth:`~trio_mqtt.MqttConnection.messages` does); a connection error stays in the
        buffer for the next read, so it is never lost behind a batch.
        """
        self.consuming = True
        items = self.items
        taken = 0
        while items and taken < limit:
            item = items[0]
            if type(item) is Failure:
                break
            items.popleft()
            if type(item) is Incoming and type(item.packet) is Publish:
                out.append(item.packet)
                taken += 1
        if taken:
            self.unread_messages -= taken
            if self.unread_messages < self.capacity:
                self._space.set()

    def get_nowait(self) -> object:
        """The next buffered event; :class:`trio.WouldBlock` when none, the end error at the end."""
        self.consuming = True
        if not self.items:
            if self.end is not None:
                raise self.end
            raise trio.WouldBlock
        item = self.items.popleft()
        self._taken(item)
        return item


class Route(_Buffer[Publish]):
    """Messages matching one filter, waiting for the task that reads them."""

    def __init__(self, topic_filter: str, capacity: int, overflow: Overflow, space: Signal) -> None:
        super().__init__(capacity)
        self.topic_filter = topic_filter
        self.overflow = overflow
        self._space = space
        self.delivered = 0

    def put(self, message: Publish) -> None:
        """Add a message, dropping one when full and the overflow policy says so."""
        items = self.items
        if len(items) >= self.capacity:
            if self.overflow == "drop_newest":
                self.dropped += 1
                return
            if self.overflow == "drop_oldest":
                items.popleft()
                self.dropped += 1
        items.append(message)
        self.delivered += 1
        if self._readable:
            self._readable.unpark_all()

    def put_failure(self, error: MqttError) -> None:
        """Queue a connection error for the reader of this route."""
        self.items.append(Failure(error))
        self._wake_readers()

    @property
    def full(self) -> bool:
        """True when the reader should pause for this route's consumer."""
        return self.overflow == "wait" and len(self.items) >= self.capacity

    async def get(self) -> Publish:
        """The next message; raises a connection error or the end error."""
        item = await self._get()
        self._made_room()
        if isinstance(item, Failure):
            raise item.error
        return item

    def get_nowait(self) -> Publish:
        """The next buffered message; :class:`trio.WouldBlock` when none."""
        items = self.items
        if not items:
            if self.end is not None:
                raise self.end
            raise trio.WouldBlock
        item = items.popleft()
        self._made_room()
        if isinstance(item, Failure):
            raise item.error
        return item

    def take_messages(self, out: list[Publish], limit: int) -> None:
        """Move up to ``limit`` buffered messages to ``out``, stopping at a connection error."""
        items = self.items
        taken = 0
        while items and taken < limit and type(items[0]) is not Failure:
            out.append(items.popleft())  # type: ignore[arg-type]
            taken += 1
        if taken:
            self._made_room()

    def _made_room(self) -> None:
        # an overflow="wait" route that was full paused the reader: room again resumes it
        if len(self.items) < self.capacity:
            self._space.set()


class MessageStream:
    """The messages of one route: ``async for message in stream`` yields
    :class:`~trio_mqtt.Publish` packets whose topic matches the route's filter.

    Iteration ends when the route or the connection is closed. Without a reconnect policy, a
    connection error is raised from the iteration (once); iterating again waits for the
    messages that arrive after the application reconnects with ``poll()``.
    """

    def __init__(self, route: Route, acknowledge: Acknowledge | None = None) -> None:
        self._route = route
        self._acknowledge = acknowledge

    @property
    def topic_filter(self) -> str:
        """The filter this stream was opened with."""
        return self._route.topic_filter

    @property
    def dropped(self) -> int:
        """Messages dropped by the overflow policy so far."""
        return self._route.dropped

    @property
    def buffered(self) -> int:
        """Messages waiting in the route's buffer (at most its ``capacity`` once it is full)."""
        return len(self._route.items)

    async def receive(self) -> Publish:
        """The next message; raises :class:`~trio_mqtt.ConnectionClosed` when closed."""
        return await self._route.get()

    def receive_nowait(self) -> Publish:
        """The next message, or raise :class:`trio.WouldBlock` when none is buffered."""
        return self._route.get_nowait()

    async def receive_batch(self, max_batch: int = 1000) -> list[Publish]:
        """Wait for the next message, then take every message already buffered with it.

        Returns between 1 and ``max_batch`` messages, in order, for one scheduling pass: a
        consumer that keeps up with a fast stream this way spends far less time in the Trio
        scheduler than one that takes a message per ``await``. Errors are raised as by
        :meth:`receive` (an error that follows a batch is raised by the next call).
        """
        if max_batch < 1:
            raise InvalidOptionError("max_batch must be at least 1")
        route = self._route
        batch = [await route.get()]
        route.take_messages(batch, max_batch - 1)
        return batch

    async def handle(
        self,
        handler: Handler,
        *,
        workers: int = 1,
        key: KeyFunction | None = None,
        max_pending: int | None = None,
        on_error: ErrorPolicy = "raise",
    ) -> None:
        """Run ``await handler(message)`` for every message, on up to ``workers`` at once.

        Messages with the same key are handled one at a time, in the order they arrived;
        messages with different keys run in parallel. With ``manual_acks=True`` each QoS 1/2
        message is acknowledged after its handler returned, in arrival order, so a message
        whose handler never finished comes again when the session resumes. See
        :doc:`/routes` for the details.

        Args:
            handler: an async function taking one :class:`~trio_mqtt.Publish`.
            workers: how many handlers may run at once.
            key: the ordering key of a message (any hashable); by default its topic.
            max_pending: how many messages may be taken from the route and not yet
                acknowledged (default ``4 * workers``). At the bound the route fills and,
                with ``overflow="wait"``, the connection stops reading from the broker.
            on_error: what an exception from ``handler`` does: ``"raise"`` cancels the other
                handlers and raises it from ``handle()`` (the message is not acknowledged);
                ``"log"`` logs it on the ``trio_mqtt`` logger and goes on; a callable
                ``on_error(message, exception)`` (plain or async) reports it and goes on.
                Going on counts the message as handled (it is acknowledged).

        Returns when the route or the connection is closed, once every message taken has
        been handled. Without a reconnect policy a connection error is raised, also after
        the messages taken have been handled.

        Raises:
            InvalidOptionError: ``workers`` or ``max_pending`` below 1, or an unknown
                ``on_error`` policy.
        """
        await run_ordered(
            self,
            handler,
            acknowledge=self._acknowledge,
            workers=workers,
            key=key,
            max_pending=max_pending,
            on_error=on_error,
        )

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> Publish:
        try:
            return await self._route.get()
        except (ConnectionClosed, RequestsDone):
            raise StopAsyncIteration from None
