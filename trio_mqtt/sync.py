"""The synchronous API: a blocking client and connection for programs that do not use Trio.

Theory of operation. :func:`connect` starts one background thread that runs ``trio.run`` around
the same :func:`~trio_mqtt.open_mqtt_connection` the async API uses, and waits until the first
connection attempt is over (raising its error in the caller). The protocol state lives in that
thread only. Every blocking method crosses into it with :func:`trio.from_thread.run` (or
``run_sync``) and the loop's :class:`~trio.lowlevel.TrioToken`, and blocks the calling thread
until the Trio side answers, so any number of threads can use the API at once.

* A sync :class:`Client` wraps one async :class:`~trio_mqtt.Client` handle; :meth:`Client.clone`
  makes another in the Trio thread. When every handle is closed, the session ends with
  :class:`~trio_mqtt.RequestsDone` and iterating the :class:`Connection` ends cleanly.
* A sync :class:`Connection` reads events with ``MqttConnection.poll()``. Reads are serialised
  by a Trio lock, so several threads may read at once; ``recv_timeout`` bounds the wait in the
  Trio thread (cancelling ``poll()`` never loses an event) and ``try_recv`` only takes an event
  that is already buffered.
* The thread ends when the :class:`Connection` is closed, when iterating it reaches the end of
  the session (all handles closed, or ``Client.disconnect()``), or when the :class:`Connection`
  is garbage collected. A ``KeyboardInterrupt`` that arrives while the main thread is blocked in
  one of these calls closes the connection at once, joins the thread and is re-raised. After
  that, blocking calls raise :class:`~trio_mqtt.ConnectionClosed`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

import trio

from . import _client, _requests
from ._connection import ConnectionStatistics, MqttConnection, open_mqtt_connection
from ._core._errors import ConnectionClosed, MqttError, RequestsDone
from ._core._events import Incoming
from ._core._packets import Properties, Publish, QoS, RetainHandling, Subscription
from ._options import MqttOptions
from ._requests import PublishResult, SubscribeResult, UnsubscribeResult

__all__ = ["Client", "Connection", "Tracker", "connect"]

logger = logging.getLogger("trio_mqtt.sync")

T = TypeVar("T")
Payload = bytes | bytearray | memoryview | str
SubscriptionSpec = Subscription | str | tuple[str, int]

PREFETCH = 64
"""Events one read may move from the Trio thread to the caller's side at most."""


class _Loop:
    """The background thread that runs the Trio connection, and the bridge into it."""

    def __init__(
        self,
        options: MqttOptions,
        event_capacity: int,
        disconnect_timeout: float,
    ) -> None:
        self._options = options
        self._event_capacity = event_capacity
        self._disconnect_timeout = disconnect_timeout
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop_mode: str | None = None  # None, "graceful" or "abort"
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._shutdown: trio.Event | None = None
        self._startup_error: BaseException | None = None
        self._crash: BaseException | None = None
        self.connection: MqttConnection | None = None
        self.recv_lock: trio.Lock | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"trio-mqtt {options.client_id or '(no id)'}", daemon=True
        )

    # ------------------------------------------------------------------ thread side
    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            if self.connection is None:
                self._startup_error = exc
            else:
                self._crash = exc
                logger.error("the trio-mqtt background loop crashed", exc_info=exc)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._shutdown = trio.Event()
        with trio.CancelScope() as scope:
            self._scope = scope
            with self._lock:
                self._token = trio.lowlevel.current_trio_token()
            self._apply_stop()
            async with open_mqtt_connection(
                self._options,
                event_capacity=self._event_capacity,
                disconnect_timeout=self._disconnect_timeout,
            ) as connection:
                self.recv_lock = trio.Lock()
                self.connection = connection
                self._ready.set()
                await self._shutdown.wait()

    def _apply_stop(self) -> None:
        """In the Trio thread: act on the stop request, if any."""
        if self._stop_mode == "abort":
            assert self._scope is not None
            self._scope.cancel()
        elif self._stop_mode == "graceful":
            assert self._shutdown is not None
            self._shutdown.set()

    # ------------------------------------------------------------------ caller side
    def start(self) -> None:
        """Start the thread and wait for the first connection attempt; raise its error."""
        self._thread.start()
        try:
            self._ready.wait()
        except BaseException:  # KeyboardInterrupt while connecting
            self.stop(graceful=False)
            raise
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        if self.connection is None:  # pragma: no cover - only after an abort while starting
            self._thread.join()
            raise ConnectionClosed("the connection was closed while connecting")

    def request_stop(self, *, graceful: bool) -> None:
        """Ask the loop to end (without waiting); an abort overrides a graceful request."""
        with self._lock:
            if self._stop_mode != "abort":
                self._stop_mode = "graceful" if graceful else "abort"
            self.call_soon(self._apply_stop)

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` in the Trio thread without waiting (from any thread, even that one)."""
        token = self._token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn)

    def stop(self, *, graceful: bool) -> None:
        """End the loop and wait for the thread (a second Ctrl-C while waiting aborts)."""
        self.request_stop(graceful=graceful)
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return
        try:
            self._thread.join()
        except BaseException:
            self.request_stop(graceful=False)
            raise

    @property
    def alive(self) -> bool:
        """True while the background thread runs."""
        return self._thread.is_alive()

    def closed_error(self) -> MqttError:
        """The error that blocking calls raise once the loop is gone."""
        error = ConnectionClosed("the connection is closed")
        if self._crash is not None:
            error.__cause__ = self._crash
        return error

    def _bridge(self, send: Callable[[trio.lowlevel.TrioToken], T]) -> T:
        token = self._token
        if token is None:  # pragma: no cover - handles exist only after a start
            raise self.closed_error()
        try:
            return send(token)
        except (trio.RunFinishedError, trio.Cancelled):
            raise self.closed_error() from None
        except KeyboardInterrupt:
            self.stop(graceful=False)
            raise

    def run(self, afn: Callable[..., Awaitable[T]], *args: object, **kwargs: object) -> T:
        """Run ``await afn(*args, **kwargs)`` in the Trio thread and return its result."""
        call = functools.partial(afn, *args, **kwargs)
        return self._bridge(lambda token: trio.from_thread.run(call, trio_token=token))

    def run_sync(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)`` in the Trio thread and return its result."""
        call = functools.partial(fn, *args, **kwargs)
        return self._bridge(lambda token: trio.from_thread.run_sync(call, trio_token=token))

    def run_nowait_first(
        self,
        fn: Callable[..., T],
        afn: Callable[..., Awaitable[T]],
        *args: object,
        **kwargs: object,
    ) -> T:
        """Try ``fn`` (a ``*_nowait`` method), and only when the queue is full wait in ``afn``.

        Running a synchronous function in the Trio thread is cheaper than running a task there,
        and the queue is usually not full.
        """
        try:
            return self.run_sync(fn, *args, **kwargs)
        except trio.WouldBlock:
            return self.run(afn, *args, **kwargs)


class Tracker(Generic[T]):
    """The pending outcome of a request made with a ``*_tracked`` or ``*_nowait`` method.

    The synchronous face of :class:`trio_mqtt.Tracker`: :meth:`wait` blocks the calling thread
    until the broker has answered.
    """

    __slots__ = ("_loop", "_tracker")

    def __init__(self, loop: _Loop, tracker: _requests.Tracker[T]) -> None:
        self._loop = loop
        self._tracker = tracker

    @property
    def done(self) -> bool:
        """True once the outcome is known."""
        return self._tracker.done

    def wait(self, timeout: float | None = None) -> T:
        """Block until the broker answered and return its answer.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Raises:
            TimeoutError: no answer within ``timeout`` seconds (the request stays pending).
            ~trio_mqtt.MqttError: the session ended before the broker answered.
        """
        tracker = self._tracker
        try:
            result: T = self._loop.run(_wait_tracker, tracker, timeout)
        except ConnectionClosed:
            if not tracker.done:
                raise
            # the loop is gone but the outcome is known: a set trio.Event can be read from a
            # run of its own, which returns the result (or raises the error) at once
            result = trio.run(tracker.wait)
        return result


async def _wait_tracker(tracker: _requests.Tracker[T], seconds: float | None) -> T:
    with trio.move_on_after(math.inf if seconds is None else seconds):
        return await tracker.wait()
    raise TimeoutError(f"no answer from the broker within {seconds:g} s")


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

        Blocks while the request queue (and the outgoing window behind it) is full. Invalid
        topics, QoS values and sizes raise here, before anything is queued.
        """
        self._loop.run_nowait_first(
            self._handle.publish_nowait,
            self._handle.publish,
            topic,
            payload,
            qos,
            retain,
            properties=properties,
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
        tracker = self._loop.run_nowait_first(
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
        subscription = Subscription(
            topic_filter, _client._qos(qos), no_local, retain_as_published, retain_handling
        )
        return self.subscribe_many_nowait([subscription], properties=properties)

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
            self._handle.subscribe_nowait, list(subscriptions), properties=properties
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
        return self.unsubscribe_many_nowait([topic_filter], properties=properties)

    def unsubscribe_many_nowait(
        self, topic_filters: Sequence[str], *, properties: Properties | None = None
    ) -> Tracker[UnsubscribeResult]:
        """Queue an UNSUBSCRIBE for several filters or raise :class:`trio.WouldBlock`."""
        tracker = self._loop.run_sync(
            self._handle.unsubscribe_nowait, list(topic_filters), properties=properties
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
        self, *, reason_code: int = 0, properties: Properties | None = None
    ) -> None:
        """Send DISCONNECT at once (without waiting for inflight flows) and close."""
        self._loop.run_sync(
            self._handle.disconnect_nowait, reason_code=reason_code, properties=properties
        )

    def reauthenticate(self) -> None:
        """Start MQTT 5 re-authentication with the configured authenticator."""
        self._loop.run(self._handle.reauthenticate)


class Connection:
    """The event stream of a connection, read from any thread. Get one from :func:`connect`.

    Events are those of :meth:`trio_mqtt.MqttConnection.poll`: ``Incoming(packet)``,
    ``Outgoing(packet)``, :class:`~trio_mqtt.Disconnected`, :class:`~trio_mqtt.Reconnecting`,
    :class:`~trio_mqtt.SessionLost` and :class:`~trio_mqtt.PublishDropped`. As in rumqttc,
    reading on after a connection error reconnects.

    The session ends when every :class:`Client` handle is closed
    (:class:`~trio_mqtt.RequestsDone`), after :meth:`Client.disconnect`, or on :meth:`close`;
    reaching that end stops the background thread. ``with connection:`` closes on exit.
    """

    def __init__(self, loop: _Loop) -> None:
        self._loop = loop
        self._end: MqttError | None = None
        self._prefetched: deque[object] = deque()
        self._finalizer = weakref.finalize(self, loop.request_stop, graceful=True)

    # ------------------------------------------------------------------ reading
    def recv(self) -> object:
        """Block until the next event and return it.

        Raises:
            ~trio_mqtt.ConnectionLost: (and its subclasses) the connection failed; the next
                read reconnects (unless a reconnect policy does it by itself).
            ~trio_mqtt.ConnectionRefused: a reconnect was refused; the next read tries again.
            ~trio_mqtt.RequestsDone: every client handle was closed (the session is over).
            ~trio_mqtt.ConnectionClosed: the connection was closed (the session is over).
        """
        return self._read(True, None)

    def recv_timeout(self, seconds: float) -> object:
        """Like :meth:`recv`, but raise :class:`TimeoutError` after ``seconds`` without events.

        A timeout loses nothing: an event that arrives later is returned by the next read.
        """
        if not seconds >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, got {seconds!r}")
        return self._read(True, seconds)

    def try_recv(self) -> object | None:
        """Return the next event if one is already buffered, else ``None``; never blocks.

        Raises a buffered connection error or the end of the session like :meth:`recv`. After a
        connection error it starts the reconnect and returns ``None`` until events arrive.
        """
        return self._read(False, None)

    def iter(self) -> Iterator[object]:
        """Yield events until the session ends; connection errors are yielded too.

        Like rumqttc's iterator of ``Result`` items, a connection error is yielded as its
        :class:`~trio_mqtt.MqttError` instance (not raised), and going on iterating reconnects.
        Iteration ends cleanly when every client handle was closed, after
        :meth:`Client.disconnect` or :meth:`close`; the background thread is then stopped.
        """
        while True:
            try:
                yield self.recv()
            except (RequestsDone, ConnectionClosed):
                return
            except MqttError as exc:
                yield exc

    def __iter__(self) -> Iterator[object]:
        return self.iter()

    def messages(self) -> Iterator[Publish]:
        """Yield incoming publishes only (other events are read and skipped).

        Connection errors are raised (reading on reconnects); iteration ends with the session.
        """
        while True:
            try:
                event = self.recv()
            except (RequestsDone, ConnectionClosed):
                return
            if type(event) is Incoming and type(event.packet) is Publish:
                yield event.packet

    def _read(self, wait: bool, timeout: float | None) -> object | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        prefetched = self._prefetched
        while True:
            try:
                item = prefetched.popleft()
            except IndexError:
                pass
            else:
                if isinstance(item, _Raise):
                    if isinstance(item.error, RequestsDone | ConnectionClosed):
                        self._finish(item.error)
                    raise item.error
                return item
            if self._end is not None:
                raise self._end
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._loop.run(_fetch, self._loop, prefetched, wait, remaining)
            except (RequestsDone, ConnectionClosed) as exc:  # the loop is gone
                self._finish(exc)
                raise
            if not wait and not prefetched:
                return None

    def _finish(self, end: MqttError) -> None:
        """The session is over: remember how it ended and stop the background thread."""
        if self._end is None:
            self._end = end
        self._loop.stop(graceful=True)

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        """True while a network connection is up and CONNACK was received."""
        connection = self._loop.connection
        return self._loop.alive and connection is not None and connection.connected

    @property
    def running(self) -> bool:
        """True while the background thread runs (until the session ended or :meth:`close`)."""
        return self._loop.alive

    def statistics(self) -> ConnectionStatistics:
        """Counters for monitoring (see :meth:`trio_mqtt.MqttConnection.statistics`)."""
        connection = self._loop.connection
        assert connection is not None
        return self._loop.run_sync(connection.statistics)

    def reconnect(self) -> None:
        """Start reconnecting after a connection error without reading the next event."""
        connection = self._loop.connection
        assert connection is not None
        self._loop.run_sync(connection.reconnect)

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Disconnect gracefully and stop the background thread; blocks until it has ended.

        Inflight QoS 1/2 flows get up to ``disconnect_timeout`` seconds (see :func:`connect`)
        to finish before DISCONNECT is sent. Idempotent. Afterwards every blocking call raises
        :class:`~trio_mqtt.ConnectionClosed`.
        """
        self._finalizer.detach()
        self._loop.stop(graceful=True)
        if self._end is None:
            self._end = ConnectionClosed("the connection was closed by the client")

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _Raise:
    """A prefetched error: the read that reaches it raises it."""

    error: MqttError


async def _fetch(loop: _Loop, out: deque[object], wait: bool, seconds: float | None) -> None:
    """In the Trio thread: move the next events from the connection to ``out``.

    Takes every event that is already buffered (at most ``PREFETCH``), so one thread crossing
    serves many reads; when none is and ``wait`` is true, waits up to ``seconds`` for one
    (raising :class:`TimeoutError`). A connection error or the end of the session is put in
    ``out`` as a :class:`_Raise` and ends the batch, so that the error is raised in order and
    the reconnect that ``poll()`` starts after an error waits for the next read. Readers take
    turns by ``loop.recv_lock``; events are appended here, in the Trio thread, so they stay in
    order whichever thread reads them.
    """
    connection, lock = loop.connection, loop.recv_lock
    assert connection is not None
    assert lock is not None
    deadline = math.inf if seconds is None else trio.current_time() + seconds
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        if not wait:
            return  # another thread is waiting for an event: nothing is buffered
        with trio.move_on_at(deadline) as scope:
            await lock.acquire()
        if scope.cancelled_caught:
            raise TimeoutError(f"no event within {seconds:g} s") from None
    try:
        if out:
            return  # another reader fetched while this one waited for the lock
        if not _take_nowait(connection, out):
            if not wait:
                return
            with trio.move_on_at(deadline):
                await _take(connection, out)
            if not out:
                raise TimeoutError(f"no event within {seconds:g} s")
        for _ in range(PREFETCH):
            if isinstance(out[-1], _Raise) or not _take_nowait(connection, out):
                break
    finally:
        lock.release()


async def _take(connection: MqttConnection, out: deque[object]) -> None:
    """Move the next event (or the error ``poll()`` raises) to ``out``; cancel-safe."""
    try:
        out.append(await connection.poll())
    except MqttError as exc:
        out.append(_Raise(exc))


def _take_nowait(connection: MqttConnection, out: deque[object]) -> bool:
    """Move a buffered event (or error) to ``out``; False when nothing is buffered.

    Like ``poll()``, this also starts the reconnect that follows a reported connection error.
    """
    try:
        out.append(connection.poll_nowait())
    except trio.WouldBlock:
        return False
    except MqttError as exc:
        out.append(_Raise(exc))
    return True


def connect(
    options: MqttOptions | str,
    *,
    event_capacity: int = 1000,
    disconnect_timeout: float = 5.0,
) -> tuple[Client, Connection]:
    """Connect to a broker and return a client handle and the connection's event stream.

    Starts the background thread that runs the connection and blocks until the first
    connection attempt is over (with a :class:`~trio_mqtt.ReconnectPolicy`, until it connected
    or used up its attempts). Ctrl-C while waiting stops the thread and is re-raised.

    Args:
        options: an :class:`~trio_mqtt.MqttOptions`, or a URL for
            :meth:`~trio_mqtt.MqttOptions.from_url`.
        event_capacity: events buffered for :meth:`Connection.recv`.
        disconnect_timeout: seconds that :meth:`Connection.close` may spend letting inflight
            QoS 1/2 flows finish and sending DISCONNECT.

    Returns:
        ``(client, connection)``, like rumqttc's ``Client::new``.

    Raises:
        ~trio_mqtt.ConnectionRefused: the broker refused the connection.
        ~trio_mqtt.ConnectionLost: the broker could not be reached (or a transport error).
        ~trio_mqtt.ConnectTimeout: no CONNACK within the connect timeout.
        ~trio_mqtt.InvalidOptionError: the options or URL are not valid.

    Example::

        client, connection = trio_mqtt.sync.connect("mqtt://localhost/?client_id=demo")
        with connection, client:
            client.subscribe("hello/#", qos=1)
            client.publish("hello/world", b"hi", qos=1)
            for message in connection.messages():
                print(message.topic, message.payload)
                break
    """
    if isinstance(options, str):
        options = MqttOptions.from_url(options)
    loop = _Loop(options, event_capacity, disconnect_timeout)
    loop.start()
    connection = Connection(loop)
    assert loop.connection is not None
    return Client(loop, loop.connection.client), connection
