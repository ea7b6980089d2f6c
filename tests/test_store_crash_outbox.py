"""Publishes queued while the broker is down survive a SIGKILL of the publisher (the outbox).

The publisher is a child process (the script below) with a :class:`SqliteSessionStore`. It
connects, the test stops the broker, and the child publishes while disconnected: every
publish waits in the queue, and ``publish()`` returns only once it is committed, so each
``D <seq>`` line the child prints is a message on disk. The test then SIGKILLs it, starts the
broker again with a subscriber, and starts the child again on the same store: it must send
exactly what was durable, each message once (QoS 2) and in order. Variants: plain offline
queueing (MQTT 3.1.1 and 5), each ``queue_full`` policy at the bound, and MQTT 5 message
expiry that runs out while the process is dead.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from crash_child import run_child  # tests/ is on sys.path under pytest

from trio_mqtt import MqttOptions, QoS, SqliteSessionStore, open_mqtt_connection
from trio_mqtt.testing._plugin import BrokerFactory

CLIENT = "outbox-publisher"

CHILD = """
import sys
import trio
from trio_mqtt import (
    MqttOptions, Properties, QueueFullError, ReconnectPolicy, SqliteSessionStore,
    open_mqtt_connection,
)

CLIENT, PORT, DIRECTORY, PHASE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
TOTAL, VERSION, MAX_QUEUED, POLICY, EXPIRING = (
    int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8], sys.argv[9] == "1"
)


def say(line):
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()


async def main():
    options = MqttOptions(
        CLIENT, "127.0.0.1", PORT, clean_start=False, protocol_version=VERSION,
        session_expiry_interval=300 if VERSION == 5 else None,
        session_store=SqliteSessionStore(DIRECTORY), max_queued=MAX_QUEUED, queue_full=POLICY,
        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
    )
    async with open_mqtt_connection(options, disconnect_timeout=10) as conn:
        client = conn.client
        if PHASE == "resume":
            while conn.statistics().waiting_publishes or conn.statistics().inflight:
                await trio.sleep(0.01)
            stats = conn.statistics()
            say(f"SENT expired={stats.publishes_expired} connects={stats.connects}")
            return
        say("CONNECTED")
        await trio.to_thread.run_sync(sys.stdin.readline)  # the broker is stopped now
        while conn.statistics().connected:
            await trio.sleep(0.01)
        for seq in range(TOTAL):
            props = Properties(message_expiry_interval=1) if EXPIRING and seq % 2 == 0 else None
            try:
                with trio.move_on_after(0.3) as scope:
                    await client.publish("outbox/seq", b"%d" % seq, qos=2, properties=props)
            except QueueFullError:
                say(f"R {seq}")
                continue
            say(f"B {seq}" if scope.cancelled_caught else f"D {seq}")
        stats = conn.statistics()
        say(f"QUEUED waiting={stats.waiting_publishes} dropped={stats.publishes_dropped_oldest}")
        await trio.sleep_forever()


trio.run(main)
"""


class Child:
    """One run of the publisher script."""

    def __init__(self, script: Path, port: int, directory: Path, phase: str, case: Case) -> None:
        self.argv = [sys.executable, str(script), CLIENT, str(port), str(directory), phase]
        self.argv += [str(case.total), str(case.version), str(case.max_queued), case.policy]
        self.argv += ["1" if case.expiring else "0"]
        self.stderr = directory.parent / f"child-{phase}.err"
        self.lines: list[str] = []
        self.returncode: int | None = None

    async def run(self, broker_stop: Callable[[], None] | None = None) -> None:
        """Run to the end; with ``broker_stop``, stop the broker once the child is connected,
        let it queue, and SIGKILL it once it has reported what it queued."""

        async def on_line(line: str, process: trio.Process) -> bool:
            if line == "CONNECTED" and broker_stop is not None:
                await trio.to_thread.run_sync(broker_stop)
                assert process.stdin is not None
                await process.stdin.send_all(b"go\n")
            return line.startswith("QUEUED")

        self.returncode, self.lines = await run_child(self.argv, self.stderr, on_line)

    def marked(self, mark: str) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith(mark + " ")]

    def explain(self) -> str:
        return f"{self.argv}: {self.lines[-5:]} {self.stderr.read_text()[-2000:]}"


class Case:
    def __init__(
        self,
        total: int,
        *,
        version: int = 5,
        max_queued: int = 100,
        policy: str = "block",
        expiring: bool = False,
    ) -> None:
        self.total = total
        self.version = version
        self.max_queued = max_queued
        self.policy = policy
        self.expiring = expiring


CASES = {
    "offline-v311": (Case(50, version=4), list(range(50))),
    "offline-v5": (Case(50), list(range(50))),
    "bound-block": (Case(21, max_queued=20), list(range(20))),
    "bound-reject": (Case(30, max_queued=20, policy="reject"), list(range(20))),
    "bound-drop-oldest": (Case(30, max_queued=20, policy="drop_oldest"), list(range(10, 30))),
    "expiry": (Case(40, expiring=True), list(range(1, 40, 2))),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_queued_publishes_survive_a_sigkill_and_go_out_once_in_order(
    mosquitto_factory: BrokerFactory, tmp_path: Path, name: str
) -> None:
    case, expected = CASES[name]
    broker = mosquitto_factory(max_inflight_messages=0, max_queued_messages=0)
    script = tmp_path / "publisher.py"
    script.write_text(CHILD)
    directory = tmp_path / "sessions"
    with trio.fail_after(60):
        first = Child(script, broker.port, directory, "queue", case)
        await first.run(broker_stop=broker.stop)
        assert first.returncode == -signal.SIGKILL, first.explain()
        durable = first.marked("D")
        # the child saw each policy act at the call
        if case.policy == "reject":
            assert first.marked("R") == list(range(20, 30)), first.explain()
        if case.policy == "block" and case.total > case.max_queued:
            assert first.marked("B") == [20], first.explain()
        if case.policy == "drop_oldest":
            assert first.lines[-1] == "QUEUED waiting=20 dropped=10", first.explain()
        at_kill = SqliteSessionStore(directory).read(CLIENT)
        assert at_kill.outgoing == ()  # nothing reached the (stopped) broker
        stored = [int(q.publish.payload) for q in at_kill.queued]
        assert stored == [seq for seq in durable if case.policy != "drop_oldest" or seq >= 10]
        if case.expiring:
            await trio.sleep(1.2)  # the even messages' 1 s expiry runs out while nobody runs

        await trio.to_thread.run_sync(broker.start)
        received: list[int] = []
        subscriber = MqttOptions("outbox-subscriber", "127.0.0.1", broker.port)
        async with (
            open_mqtt_connection(subscriber) as sub,
            sub.route("outbox/#", qos=QoS.EXACTLY_ONCE, capacity=100) as stream,
        ):
            second = Child(script, broker.port, directory, "resume", case)
            await second.run()
            assert second.returncode == 0, second.explain()
            expired = len(stored) - len(expected) if case.expiring else 0
            assert second.lines[-1] == f"SENT expired={expired} connects=1", second.explain()
            # every publish was acknowledged (QoS 2: PUBCOMP) before the child ended, so a
            # marker sent now arrives after all of them
            async with open_mqtt_connection(
                MqttOptions("outbox-marker", "127.0.0.1", broker.port)
            ) as m:
                await m.client.publish("outbox/end", b"", qos=2)
            async for message in stream:
                if message.topic == "outbox/end":
                    break
                received.append(int(message.payload))
    assert received == expected
    assert SqliteSessionStore(directory).read(CLIENT).queued == ()
