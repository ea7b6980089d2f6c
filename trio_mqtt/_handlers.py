"""Ordered concurrent handlers: one route's messages, several workers, order kept per key.

Theory of operation. :meth:`MessageStream.handle <trio_mqtt.MessageStream.handle>` runs, in a
nursery of its own, a *feeder* (the calling task), ``workers`` *worker* tasks and one *acker*:

* The feeder takes messages from the route while fewer than ``max_pending`` are pending (taken
  and not yet acknowledged), numbers them in arrival order and files each under its key. A key
  that gets its first message becomes *ready*. At the bound the feeder stops taking, the route
  fills, and a full ``overflow="wait"`` route pauses the connection's reader: the backpressure
  reaches the broker, as it does for a slow ``async for`` consumer.
* A worker takes a ready key, runs the handler on that key's oldest message, and puts the key
  back at the end of the ready queue when more messages wait under it. A key is never ready
  and held at once, so the messages of one key run one at a time in arrival order, while
  different keys run in parallel, at most ``workers`` at once.
* Handlers finish out of order; acknowledgements must not (MQTT-4.6.0-2). A finished message
  is *released* once every message that arrived before it has finished too, and the acker
  hands released messages to ``client.ack()`` in that order (without manual acks there is no
  acker: a released message simply stops counting as pending). So no ack ever waits for a message
  still queued in the pool, and an ack is sent only after its handler returned: a message
  whose handler did not finish is delivered again when the session resumes (at least once).
  A message counts as pending until the acker has handed it over, which also bounds what a
  slow oldest message holds back.

Errors: an exception from a handler is the application's. ``on_error="raise"`` cancels the
pool and raises it from ``handle()`` (the message is not acknowledged); ``"log"`` or a callback
reports it and the message counts as handled. Every task of the pool records its first error
and cancels the pool, so ``handle()`` raises that error itself, never an exception group.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Literal, Protocol

import trio

from ._core._errors import ConnectionClosed, InvalidOptionError, MqttError, RequestsDone
from ._core._packets import Publish

__all__ = ["Acknowledge", "ErrorPolicy", "Handler", "KeyFunction", "run_ordered"]

logger = logging.getLogger("trio_mqtt")

Handler = Callable[[Publish], Awaitable[object]]
KeyFunction = Callable[[Publish], Hashable]
ErrorCallback = Callable[[Publish, Exception], object]
ErrorPolicy = Literal["raise", "log"] | ErrorCallback
Acknowledge = Callable[[Publish], Awaitable[None]]


class _Source(Protocol):
    async def receive_batch(self, max_batch: int = 1000) -> list[Publish]: ...


def _topic(message: Publish) -> Hashable:
    return message.topic


class _Wakeup:
    """A level-triggered wakeup for one waiting task (set before the wait counts)."""

    __slots__ = ("_flag", "_lot")

    def __init__(self) -> None:
        self._flag = False
        self._lot = trio.lowlevel.ParkingLot()

    def set(self) -> None:
        self._flag = True
        self._lot.unpark_all()

    async def wait(self) -> None:
        if not self._flag:
            await self._lot.park()
        self._flag = False


class _Pool:
    """The shared state of one ``handle()`` call (see the module docstring)."""

    def __init__(
        self,
        handler: Handler,
        key: KeyFunction,
        on_error: ErrorPolicy,
        acknowledge: Acknowledge | None,
        max_pending: int,
    ) -> None:
        self.handler = handler
        self.key = key
        self.on_error = on_error
        self.acknowledge = acknowledge
        self.max_pending = max_pending
        #: messages taken and not yet handed to the acker's end
        self.pending = 0
        self.feeding = True
        self.queues: dict[Hashable, deque[tuple[int, Publish]]] = {}
        self.ready_send, self.ready_receive = trio.open_memory_channel[Hashable](math.inf)
        #: arrival number -> message, for messages not yet released (in arrival order)
        self.unreleased: dict[int, Publish] = {}
        self.finished: set[int] = set()
        self.next_number = 0
        self.next_release = 0
        self.released: deque[Publish] = deque()
        self.room = _Wakeup()
        self.release_ready = _Wakeup()
        self.error: BaseException | None = None
        self.cancel_scope = trio.CancelScope()

    # ------------------------------------------------------------------ the feeder
    async def feed(self, source: _Source) -> MqttError | None:
        """Take messages until the stream ends; return a connection error to raise later."""
        while True:
            while self.pending >= self.max_pending:
                await self.room.wait()
            try:
                batch = await source.receive_batch(self.max_pending - self.pending)
            except (ConnectionClosed, RequestsDone):
                return None
            except MqttError as exc:
                return exc
            for message in batch:
                self.add(message)

    def add(self, message: Publish) -> None:
        number = self.next_number
        self.next_number += 1
        self.pending += 1
        self.unreleased[number] = message
        key = self.key(message)
        queue = self.queues.get(key)
        if queue is None:
            self.queues[key] = deque([(number, message)])
            self.ready_send.send_nowait(key)
        else:
            queue.append((number, message))

    def stop_feeding(self) -> None:
        self.feeding = False
        self.release_ready.set()
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        if not self.feeding and self.pending == 0:
            self.ready_send.close()

    # ------------------------------------------------------------------ the workers
    async def work(self) -> None:
        async for key in self.ready_receive:
            queue = self.queues[key]
            number, message = queue[0]
            await self._handle_one(message)
            queue.popleft()
            if queue:
                self.ready_send.send_nowait(key)
            else:
                del self.queues[key]
            self._finish(number)

    async def _handle_one(self, message: Publish) -> None:
        try:
            await self.handler(message)
        except Exception as exc:
            policy = self.on_error
            if policy == "raise":
                raise
            if policy == "log":
                logger.exception("handler failed on a message from %r", message.topic)
            elif callable(policy):
                outcome = policy(message, exc)
                if inspect.isawaitable(outcome):
                    await outcome

    def _finish(self, number: int) -> None:
        self.finished.add(number)
        released = 0
        while self.next_release in self.finished:
            self.finished.remove(self.next_release)
            message = self.unreleased.pop(self.next_release)
            if self.acknowledge is not None:
                self.released.append(message)
            released += 1
            self.next_release += 1
        if self.acknowledge is not None:
            self.release_ready.set()
        elif released:
            # nothing to acknowledge (the client acked on arrival): no acker, no task hop
            self.pending -= released
            self.room.set()
            self._close_if_drained()

    # ------------------------------------------------------------------ the acker
    async def ack(self) -> None:
        while True:
            while not self.released:
                if not self.feeding and self.pending == 0:
                    return
                await self.release_ready.wait()
            message = self.released.popleft()
            if self.acknowledge is not None and message.packet_id:
                await self._acknowledge(self.acknowledge, message)
            self.pending -= 1
            self.room.set()
            self._close_if_drained()

    @staticmethod
    async def _acknowledge(acknowledge: Acknowledge, message: Publish) -> None:
        try:
            await acknowledge(message)
        except MqttError as exc:
            # The session moved on (it was lost, or the connection ended): the ack has no
            # flow left to finish, and the broker delivers the message again if it still can.
            logger.debug("no ack for packet id %d: %s", message.packet_id, exc)

    # ------------------------------------------------------------------ errors
    async def guarded(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run one task of the pool; its error cancels the pool and is raised by handle()."""
        try:
            await job()
        except BaseException as exc:
            if self.error is None and not isinstance(exc, trio.Cancelled):
                self.error = exc
            self.cancel_scope.cancel()
            if not isinstance(exc, Exception):
                raise


def check_pool_options(workers: int, max_pending: int | None, on_error: ErrorPolicy) -> int:
    """Validate ``handle()``'s arguments; return the pending bound to use."""
    if not isinstance(workers, int) or workers < 1:
        raise InvalidOptionError(f"workers must be at least 1, got {workers!r}")
    if max_pending is None:
        max_pending = 4 * workers
    if not isinstance(max_pending, int) or max_pending < 1:
        raise InvalidOptionError(f"max_pending must be at least 1, got {max_pending!r}")
    if not (on_error in ("raise", "log") or callable(on_error)):
        raise InvalidOptionError(f"on_error must be 'raise', 'log' or a callable: {on_error!r}")
    return max_pending


async def run_ordered(
    source: _Source,
    handler: Handler,
    *,
    acknowledge: Acknowledge | None,
    workers: int,
    key: KeyFunction | None,
    max_pending: int | None,
    on_error: ErrorPolicy,
) -> None:
    """The body of :meth:`MessageStream.handle` (see the module docstring)."""
    bound = check_pool_options(workers, max_pending, on_error)
    pool = _Pool(handler, key or _topic, on_error, acknowledge, bound)
    failure: MqttError | None = None

    async def feed() -> None:
        nonlocal failure
        try:
            failure = await pool.feed(source)
        finally:
            pool.stop_feeding()

    with pool.cancel_scope:
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(pool.guarded, pool.work)
            if acknowledge is not None:
                nursery.start_soon(pool.guarded, pool.ack)
            await pool.guarded(feed)
    if pool.error is not None:
        raise pool.error
    if failure is not None:
        raise failure
