"""Ctrl-C while the main thread is blocked in the sync API: clean shutdown, then re-raise.

SIGINT only reaches the main thread, and pytest treats a KeyboardInterrupt as the end of the
session, so each case runs in a child process. A helper thread in the child waits until the
main thread is really blocked inside the call (``recv()``, iteration or ``connect()``, found
by looking at its stack) before it sends the signal, so the test never races the call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import trio_mqtt
from trio_mqtt.testing import MosquittoBroker

PACKAGE_ROOT = str(Path(trio_mqtt.__file__).resolve().parent.parent)

# Shared by the child scripts: a helper thread that waits until the main thread is blocked in
# a call whose stack holds every one of ``frame_names``, then sends SIGINT to the process.
INTERRUPTER = textwrap.dedent(
    """
    import os, signal, sys, threading, time

    def start_interrupter(*frame_names):
        main_id = threading.main_thread().ident

        def blocked():
            frame = sys._current_frames().get(main_id)
            names = set()
            while frame is not None:
                names.add(frame.f_code.co_name)
                frame = frame.f_back
            return all(name in names for name in frame_names)

        def interrupter():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            deadline = time.monotonic() + 10
            while not blocked():
                if time.monotonic() > deadline:
                    os._exit(3)
                time.sleep(0.002)
            os.kill(os.getpid(), signal.SIGINT)

        helper = threading.Thread(target=interrupter)
        helper.start()
        return helper
    """
)

CHILD = INTERRUPTER + textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from trio_mqtt import ConnectionClosed
    from trio_mqtt.sync import connect

    url, mode, delivery = sys.argv[1], sys.argv[2], sys.argv[3]
    if delivery == "elsewhere":  # see CONNECTING_CHILD
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    client, connection = connect(url + "/?client_id=interrupted-" + mode)
    client.subscribe("quiet/#", 1)
    helper = start_interrupter("recv", "_wait_answer")
    try:
        if mode == "recv":
            while connection.try_recv() is not None:
                pass
            connection.recv()
        else:
            for event in connection.iter():
                pass
    except KeyboardInterrupt:
        helper.join()
        print("interrupted")
    else:
        print("not interrupted")
        sys.exit(4)
    print("threads", [t.name for t in threading.enumerate() if t is not helper])
    print("running", connection.running)
    try:
        client.publish("quiet/after", b"x")
    except ConnectionClosed:
        print("publish raises ConnectionClosed")
    """
)


@pytest.mark.parametrize("delivery", ["main", "elsewhere"])
@pytest.mark.parametrize("mode", ["recv", "iter"])
def test_keyboard_interrupt_in_blocking_read(
    mosquitto: MosquittoBroker, mode: str, delivery: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mosquitto.url, mode, delivery],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "interrupted",
        "threads ['MainThread']",
        "running False",
        "publish raises ConnectionClosed",
    ], result.stderr
    assert "Traceback" not in result.stderr


CONNECTING_CHILD = INTERRUPTER + textwrap.dedent(
    """
    import os, signal, socket, sys, threading, time
    from trio_mqtt import MqttOptions
    from trio_mqtt.sync import connect

    # SIGINT blocked in the main thread (and the Trio thread, which inherits the mask) reaches
    # the helper thread instead: it sets Python's signal flag but never wakes the blocked main
    # thread, as when a Ctrl-C lands just before the main thread blocks
    if sys.argv[1] == "elsewhere":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    # a listening socket that never accepts: TCP connects, CONNACK never comes
    server = socket.create_server(("127.0.0.1", 0))
    options = MqttOptions("interrupted-connect", "127.0.0.1", server.getsockname()[1])
    helper = start_interrupter("connect", "wait")
    start = time.monotonic()
    try:
        connect(options)
    except KeyboardInterrupt:
        helper.join()
        print("interrupted", time.monotonic() - start < 2)
    print("threads", [t.name for t in threading.enumerate()])
    """
)


@pytest.mark.parametrize("delivery", ["main", "elsewhere"])
def test_keyboard_interrupt_while_connecting(delivery: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CONNECTING_CHILD, delivery],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )
    assert result.returncode == 0, result.stderr
    # interrupted well before the 5 s connect timeout (even when the signal lands just before
    # the main thread blocks), and no thread left
    assert result.stdout.splitlines() == ["interrupted True", "threads ['MainThread']"]
