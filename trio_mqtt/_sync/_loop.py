"""The background thread that runs a Trio connection, and the bridge into it.

See :mod:`trio_mqtt.sync` for the theory of operation.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

from .. import _requests
from .._connection import MqttConnection, open_mqtt_connection
from .._core._errors import ConnectionClosed, MqttError
from .._options import MqttOptions
from . import _bridge

__all__ = ["Tracker"]

logger = logging.getLogger("trio_mqtt.sync")

T = TypeVar("T")


class _Loop:
    """The background thread that runs the Trio connection, and the bridge into it."""

    def __init__(
        self,
        options: MqttOptions,
        event_capacity: int,
        disconnect_timeout: float,
        drop_unread: bool,
    ) -> None:
        self._options = options
        self._event_capacity = event_capacity
        self._disconnect_timeout = disconnect_timeout
        self._drop_unread = drop_unread
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
                drop_unread=self._drop_unread,
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
        try:
            _bridge.start_thread(self._thread)
            _bridge.wait_event(self._ready)
        except BaseException:  # KeyboardInterrupt while connecting
            self.stop(graceful=False)
            raise
        if self._startup_error is not None:
            _bridge.join_thread(self._thread)
            raise self._startup_error
        if self.connection is None:  # pragma: no cover - only after an abort while starting
            _bridge.join_thread(self._thread)
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
            _bridge.join_thread(self._thread)
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

    def _cross(self, send: Callable[[trio.lowlevel.TrioToken], T]) -> T:
        token = self._token
        if token is None:  # pragma: no cover - handles exist only after a start
            raise self.closed_error()
        if threading.current_thread() is self._thread:
            raise RuntimeError("a blocking trio_mqtt.sync call would deadlock its own Trio thread")
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
        return self._cross(lambda token: _bridge.call_async(token, call))

    def run_sync(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)`` in the Trio thread and return its result."""
        call = functools.partial(fn, *args, **kwargs)
        return self._cross(lambda token: _bridge.call_sync(token, call))

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
