"""Calls from an ordinary thread into the Trio thread that stay interruptible by Ctrl-C.

:func:`trio.from_thread.run` blocks its caller in an untimed lock acquire. CPython runs a
signal handler only when the main thread executes bytecode, and a SIGINT that lands just before
that acquire starts (after the last check for pending signals) does not wake it: Ctrl-C is then
noticed only when the Trio side answers, which may be never. Waiting in slices of
:data:`SIGNAL_CHECK_INTERVAL` seconds bounds that delay, at the cost of one wake-up per slice
while a call blocks in the main thread. Other threads never receive ``KeyboardInterrupt`` and
wait without slices.
"""

from __future__ import annotations

import contextvars
import queue
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, cast

import trio

__all__ = ["SIGNAL_CHECK_INTERVAL", "call_async", "call_sync", "join_thread", "wait_event"]

T = TypeVar("T")

SIGNAL_CHECK_INTERVAL = 0.1
"""Longest delay, in seconds, between a Ctrl-C and the blocked main thread noticing it."""


def _slice() -> float | None:
    return SIGNAL_CHECK_INTERVAL if threading.current_thread() is threading.main_thread() else None


class _Answer(Generic[T]):
    """The result of a call made in the Trio thread, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: T | None = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None  # no reference cycle through the traceback
            raise error
        return cast(T, self.value)


def _wait_answer(answers: queue.SimpleQueue[_Answer[T]]) -> T:
    timeout = _slice()
    while True:
        try:
            answer = answers.get(timeout=timeout)
        except queue.Empty:
            continue  # the main thread ran bytecode: a pending Ctrl-C has been raised by now
        return answer.unwrap()


def call_sync(token: trio.lowlevel.TrioToken, fn: Callable[[], T]) -> T:
    """Run ``fn()`` in the Trio thread (as a callback, not a task) and return its result.

    Raises:
        trio.RunFinishedError: the Trio run is over.
    """
    answers: queue.SimpleQueue[_Answer[T]] = queue.SimpleQueue()
    context = contextvars.copy_context()

    def in_trio_thread() -> None:
        try:
            answers.put(_Answer(context.run(fn)))
        except BaseException as exc:  # handed to the caller, who re-raises it
            answers.put(_Answer(error=exc))

    token.run_sync_soon(in_trio_thread)
    return _wait_answer(answers)


def call_async(token: trio.lowlevel.TrioToken, afn: Callable[[], Awaitable[T]]) -> T:
    """Run ``await afn()`` in a system task of the Trio thread and return its result.

    Raises:
        trio.RunFinishedError: the Trio run is over (or too far into its shutdown to start a
            task).
        trio.Cancelled: the run ended while ``afn`` was running.
    """
    answers: queue.SimpleQueue[_Answer[T]] = queue.SimpleQueue()
    context = contextvars.copy_context()

    async def task() -> None:
        try:
            answers.put(_Answer(await afn()))
        except BaseException as exc:  # handed to the caller, who re-raises it
            answers.put(_Answer(error=exc))

    def in_trio_thread() -> None:
        try:
            trio.lowlevel.spawn_system_task(task, context=context)
        except RuntimeError:  # the system nursery no longer takes tasks
            answers.put(_Answer(error=trio.RunFinishedError("the Trio run is shutting down")))

    token.run_sync_soon(in_trio_thread)
    return _wait_answer(answers)


def wait_event(event: threading.Event) -> None:
    """``event.wait()``, interruptible by Ctrl-C in the main thread."""
    timeout = _slice()
    while not event.wait(timeout):
        pass


def join_thread(thread: threading.Thread) -> None:
    """``thread.join()``, interruptible by Ctrl-C in the main thread."""
    timeout = _slice()
    while True:
        thread.join(timeout)
        if not thread.is_alive():
            return


def start_thread(thread: threading.Thread) -> None:
    """``thread.start()``, with a Ctrl-C that lands meanwhile raised only once it has started.

    ``Thread.start`` waits for the new thread to announce itself; a ``KeyboardInterrupt``
    raised in that wait leaves a thread that runs although ``is_alive()`` still says no, so
    the caller could not stop it. In the main thread, SIGINT is held back for those few
    microseconds and delivered (to the previous handler) right after.
    """
    if threading.current_thread() is not threading.main_thread():
        thread.start()
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        thread.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        if callable(previous):  # Python's default handler raises KeyboardInterrupt
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
