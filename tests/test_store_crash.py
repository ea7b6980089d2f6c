"""A publisher process SIGKILLed mid-stream resumes from its SQLite session store.

The publisher is a child process (the script below) that publishes sequence numbers, QoS 2
for even ones and QoS 1 for odd ones, through a real mosquitto that stays up. Its store prints
``D <seq>`` once a publish is durable (committed to the outbox when admitted, or as a flow
before it can reach the broker).
The test kills it mid-stream, starts it again on the same store directory and client id, and a
subscriber (persistent session, QoS 2) counts deliveries per sequence number: every message
arrives, QoS 2 ones exactly once.

Where the restarted publisher resumes: every publish is committed in order when admitted, and
one that was committed is queued, in flight or finished. So the restarted process sends what
the store holds (queued and in flight) and then publishes from one past the highest sequence
number that was durable: the highest ``D`` line printed, or a publish found in the store (a
commit can finish just before the kill, without its line).
"""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio
from crash_child import run_child  # tests/ is on sys.path under pytest

from trio_mqtt import (
    MqttOptions,
    ProtocolVersion,
    QoS,
    SqliteSessionStore,
    open_mqtt_connection,
)
from trio_mqtt.testing._plugin import BrokerFactory

CLIENT = "crash-publisher"
TOTAL = 3000
KILL_AFTER = 1000  # durable publishes before the first process is killed

CHILD = """
import sys
import trio
from trio_mqtt import MqttOptions, SqliteSessionStore, open_mqtt_connection
from trio_mqtt.sansio import ChangeKind, Publish

CLIENT = sys.argv[1]


class ReportingStore(SqliteSessionStore):
    async def apply(self, changes):
        await super().apply(changes)
        durable = (ChangeKind.SENT, ChangeKind.QUEUED)
        lines = [f"D {int(c.publish.payload)}\\n" for c in changes if c.kind in durable]
        if lines:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()


async def main(port, directory, start, total, version, in_thread):
    store = ReportingStore(directory, in_thread=bool(in_thread))
    restored = store.read(CLIENT)
    for packet in restored.outgoing:
        if isinstance(packet, Publish):
            start = max(start, int(packet.payload) + 1)
    for queued in restored.queued:
        start = max(start, int(queued.publish.payload) + 1)
    kept = len(restored.outgoing) + len(restored.queued)
    print(f"START {start} {kept}", flush=True)
    options = MqttOptions(
        CLIENT, "127.0.0.1", port, clean_start=False, session_store=store, inflight=50,
        protocol_version=version,
        # MQTT 5: the broker keeps the session only with an expiry interval
        session_expiry_interval=300 if version == 5 else None,
    )
    async with open_mqtt_connection(options, disconnect_timeout=20) as conn:
        for seq in range(start, total):
            await conn.client.publish("crash/seq", b"%d" % seq, qos=2 if seq % 2 == 0 else 1)
    print("DONE", flush=True)


trio.run(main, int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:]))
"""


class Child:
    """One run of the publisher script; collects what it printed."""

    def __init__(
        self,
        script: Path,
        port: int,
        directory: Path,
        start: int,
        settings: tuple[ProtocolVersion, bool],
    ) -> None:
        version, in_thread = settings
        self.argv = [sys.executable, str(script), CLIENT, str(port), str(directory), str(start)]
        self.argv += [str(TOTAL), str(int(version)), str(int(in_thread))]
        self.stderr = directory.parent / f"child-{start}.err"
        self.durable = -1
        self.lines: list[str] = []
        self.returncode: int | None = None

    async def run(self, kill_after: int | None = None) -> None:
        killed = False

        async def on_line(line: str, process: trio.Process) -> bool:
            nonlocal killed
            if line.startswith("D "):
                self.durable = max(self.durable, int(line[2:]))
            if killed or kill_after is None or self.durable < kill_after:
                return False
            killed = True
            return True

        self.returncode, self.lines = await run_child(self.argv, self.stderr, on_line)

    def explain(self) -> str:
        return f"{self.argv}: {self.lines[-3:]} {self.stderr.read_text()[-2000:]}"


@pytest.mark.parametrize(
    ("version", "in_thread"),
    [(ProtocolVersion.V311, True), (ProtocolVersion.V5, True), (ProtocolVersion.V311, False)],
)
async def test_killed_publisher_resumes_without_loss_or_qos2_duplicates(
    mosquitto_factory: BrokerFactory, tmp_path: Path, version: ProtocolVersion, in_thread: bool
) -> None:
    # An unlimited broker window and queue: see DESIGN.md on mosquitto 2.0.11 and QoS 2 counts.
    broker = mosquitto_factory(max_inflight_messages=0, max_queued_messages=0)
    script = tmp_path / "publisher.py"
    script.write_text(CHILD)
    directory = tmp_path / "sessions"
    counts: Counter[int] = Counter()
    finished = trio.Event()
    subscriber = MqttOptions("crash-subscriber", "127.0.0.1", broker.port, clean_start=False)
    with trio.fail_after(60):
        async with (
            open_mqtt_connection(subscriber) as sub,
            sub.route("crash/#", qos=QoS.EXACTLY_ONCE, capacity=TOTAL) as stream,
            trio.open_nursery() as nursery,
        ):

            async def count() -> None:
                async for message in stream:
                    if message.topic == "crash/end":
                        finished.set()
                        return
                    counts[int(message.payload)] += 1

            nursery.start_soon(count)
            first = Child(script, broker.port, directory, 0, (version, in_thread))
            await first.run(kill_after=KILL_AFTER)
            assert first.returncode == -signal.SIGKILL, first.explain()
            assert "DONE" not in first.lines
            at_kill = SqliteSessionStore(directory).read(CLIENT)
            assert at_kill.outgoing, "killed with nothing in flight: the test proves nothing"
            kept = len(at_kill.outgoing) + len(at_kill.queued)

            second = Child(script, broker.port, directory, first.durable + 1, (version, in_thread))
            await second.run()
            assert second.returncode == 0, second.explain()
            assert second.lines[0].split()[2] == str(kept)
            assert second.lines[-1] == "DONE"
            assert SqliteSessionStore(directory).read(CLIENT).outgoing == ()

            # Everything the publisher sent was acknowledged before it left, so a marker
            # published now reaches the subscriber after all of it.
            marker = MqttOptions("crash-marker", "127.0.0.1", broker.port)
            async with open_mqtt_connection(marker) as conn:
                await conn.client.publish("crash/end", b"", qos=1)
            await finished.wait()

    missing = sorted(set(range(TOTAL)) - set(counts))
    assert not missing, f"lost {len(missing)} messages, first {missing[:10]}"
    assert set(counts) == set(range(TOTAL))
    twice = [seq for seq in range(0, TOTAL, 2) if counts[seq] != 1]
    assert not twice, f"QoS 2 messages not delivered exactly once: {twice[:10]}"
