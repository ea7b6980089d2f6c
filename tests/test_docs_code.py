"""Every Python code block in docs/*.rst runs, against private mosquitto brokers.

That is every ``.. code-block:: python``, every ``::`` literal block that parses as Python
(Sphinx highlights those as Python), and the same in the docstrings that the pages' autodoc
directives render (an ``Example::`` in the reference).

The blocks of one page run in order, in one namespace, in a fresh interpreter
(``tests/docs_runner.py``, whose docstring describes how), so that later blocks can use what
earlier ones made, as a reader pasting them would. The docs address the broker as a reader's
own would be addressed (``localhost:1883``, ``mqtts://localhost``...); the runner resolves those
addresses to a private broker started for the page, with the listeners the page needs, and
``SSL_CERT_FILE`` makes that broker's throwaway CA the trusted one, so ``TlsTransport()`` with
no arguments verifies its certificate as it would a real one.

Each block has an entry in :data:`EXPECTED` that says what running it must show: the lines it
prints (regular expressions, matched in full, in order), assertions about what it built, or the
line after which a block that runs forever by design has shown enough. A Python block that is
not run at all is listed in :data:`NOT_RUN` with the reason. A new block in the docs fails
:func:`test_every_block_has_an_expectation` until it gets an entry here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import trio_mqtt
from trio_mqtt.testing import MosquittoBroker

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNNER = Path(__file__).resolve().parent / "docs_runner.py"
PACKAGE_ROOT = str(Path(trio_mqtt.__file__).resolve().parent.parent)
BLOCK_TIMEOUT = 10.0  # seconds for one block (trio.fail_after in the runner)
PAGE_TIMEOUT = 40.0  # seconds for a page's interpreter (subprocess timeout)

_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. code-block:: *(?P<language>\S+) *$")
_OPTION = re.compile(r"^ *:[\w-]+:.*$")
_PYTHON = {"python", "python3", "py"}
_AUTODOC = re.compile(
    r"^ *\.\. auto(function|class|exception|method|data|attribute|module):: *(?P<name>[\w.]+)"
)
_CURRENT_MODULE = re.compile(r"^ *\.\. (currentmodule|module):: *(?P<name>[\w.]+) *$")


# ----------------------------------------------------------------------------- finding blocks


@dataclass(frozen=True)
class Block:
    """One Python code block of a docs page (or of a docstring the page renders)."""

    page: str
    line: int  # 1-based line of its directive, ``::`` paragraph or autodoc directive
    code: str
    docstring_of: str = ""  # the object whose docstring holds it, for autodoc examples

    @property
    def name(self) -> str:
        where = f"{self.page}:{self.line}"
        return f"{where}({self.docstring_of})" if self.docstring_of else where


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _body(lines: list[str], start: int, parent_indent: int) -> tuple[str, int]:
    """The dedented text of the block whose content starts at ``lines[start]`` or later."""
    index = start
    while index < len(lines) and (not lines[index].strip() or _OPTION.match(lines[index])):
        if lines[index].strip() and _indent(lines[index]) <= parent_indent:
            break
        index += 1
    body: list[str] = []
    while index < len(lines):
        line = lines[index]
        if line.strip() and _indent(line) <= parent_indent:
            break
        body.append(line)
        index += 1
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n", index


def _is_python(text: str) -> bool:
    try:
        compile(text, "<docs>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError:
        return False
    return True


def _code_blocks(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(0-based line, code) of each ``.. code-block:: python`` and of each ``::`` literal
    block that parses as Python (Sphinx highlights a literal block as Python when it
    parses) in these reST lines."""
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = _DIRECTIVE.match(line)
        if directive:
            code, end = _body(lines, index + 1, len(directive["indent"]))
            if directive["language"] in _PYTHON:
                yield index, code
            index = end
        elif line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            code, end = _body(lines, index + 1, _indent(line))
            if code.strip() and _is_python(code):
                yield index, code
            index = max(end, index + 1)
        else:
            index += 1


def _resolve(name: str, module: str | None) -> Any:
    """The object an autodoc directive names, as Sphinx finds it (relative to the current
    module first)."""
    for candidate in ([f"{module}.{name}"] if module else []) + [name]:
        parts = candidate.split(".")
        for split in range(len(parts), 0, -1):
            try:
                found: Any = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            try:
                for attribute in parts[split:]:
                    found = getattr(found, attribute)
            except AttributeError:
                break
            return found
    raise LookupError(f"autodoc names {name!r}, which cannot be imported")


def _rendered_docstrings(lines: list[str]) -> Iterator[tuple[int, str, str]]:
    """(0-based line, name, docstring) of each docstring the page's autodoc directives
    render: the object's own, and those of the members its ``:members:`` option lists (all
    public ones for a bare ``:members:``)."""
    module: str | None = None
    for index, line in enumerate(lines):
        current = _CURRENT_MODULE.match(line)
        if current:
            module = current["name"]
            continue
        directive = _AUTODOC.match(line)
        if not directive:
            continue
        found = _resolve(directive["name"], module)
        yield index, directive["name"], inspect.getdoc(found) or ""
        options = itertools.takewhile(lambda option: _OPTION.match(option), lines[index + 1 :])
        for option in options:
            if not option.strip().startswith(":members:"):
                continue
            members = [m.strip() for m in option.split(":members:")[1].split(",") if m.strip()]
            if not members and inspect.ismodule(found):
                members = list(getattr(found, "__all__", ()))
            elif not members:
                members = [member for member in vars(found) if not member.startswith("_")]
            for member in members:
                doc = inspect.getdoc(getattr(found, member, None)) or ""
                yield index, f"{directive['name']}.{member}", doc


def python_blocks(path: Path) -> list[Block]:
    """The page's Python blocks, and those in the docstrings it renders, in page order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = [Block(path.name, index + 1, code) for index, code in _code_blocks(lines)]
    for index, name, doc in _rendered_docstrings(lines):
        blocks += [
            Block(path.name, index + 1, code, name) for _, code in _code_blocks(doc.splitlines())
        ]
    return sorted(blocks, key=lambda block: block.line)


PAGES = sorted(DOCS.glob("*.rst"))
BLOCKS = [block for page in PAGES for block in python_blocks(page)]


# ----------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expect:
    """What running one block must show.

    Attributes:
        anchor: text that occurs in this block and in no other block of the page.
        lines: regular expressions that the printed lines must match in full, in order (all
            of them: no fewer and no more lines).
        stop_at: for a block that runs until stopped (a loop over every message): stop it
            once it prints a line that matches this in full; the line must come.
        given: code run just before the block, in its namespace: stand-ins for what the docs
            leave to the reader (a ``handle()`` function, the reader's data).
        check: code run just after the block, in its namespace, asserting what it built or
            did (top-level ``await`` allowed).
        around: for a fragment that the page's prose places inside an open connection (it
            uses ``conn`` or ``client``): code with a line ``BLOCK`` where the block goes,
            unchanged but indented to that line's depth.
        stop_grouped: the stop reaches the runner inside an exception group, because it
            passes through a nursery of the block's own. Otherwise it must arrive as it was
            raised: ``open_mqtt_connection`` and the sync API let the reader's exceptions
            through unchanged.
        event_loop: what runs a block with top-level ``await``: ``"trio"``, or ``"asyncio"``
            for another library's code shown for comparison (aiomqtt on the migration page).
    """

    anchor: str
    lines: tuple[str, ...] | None = None
    stop_at: str | None = None
    given: str = ""
    check: str = ""
    around: str = ""
    stop_grouped: bool = False
    event_loop: str = "trio"

    def __post_init__(self) -> None:
        if self.lines is None and not self.check and self.stop_at is None:
            raise ValueError(f"expectation {self.anchor!r} checks nothing")


@dataclass(frozen=True)
class Page:
    """How to run one page: the broker it needs, and what each block must show."""

    blocks: tuple[Expect, ...]
    broker: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[MosquittoBroker, Path], None] | None = None  # (broker, working folder)


def _tls_client_files(broker: MosquittoBroker, folder: Path) -> None:
    """The files connecting.rst's TLS example names, made from the page broker's CA: a CA
    file, a client certificate, and its key encrypted with the example's ``key_password``."""
    from cryptography.hazmat.primitives import serialization

    shutil.copy(broker.ca_pem_path, folder / "ca.pem")
    shutil.copy(broker.client_cert_path, folder / "client.pem")
    key = serialization.load_pem_private_key(broker.client_key_path.read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (folder / "client.key").write_bytes(encrypted)


def _in_connection(name: str, *before: str) -> str:
    """An ``around`` template: the fragment runs inside a connection as ``conn``, after the
    ``before`` lines (which set the scene, e.g. subscribe and publish)."""
    lines = [
        "from trio_mqtt import QoS, open_mqtt_connection",
        "",
        f'async with open_mqtt_connection("mqtt://localhost/?client_id=docs-{name}") as conn:',
        *(f"    {line}" for line in before),
        "    BLOCK",
    ]
    return "\n".join(lines) + "\n"


EXPECTED: dict[str, Page] = {
    "index.rst": Page(blocks=(Expect("client_id=hello", lines=("hello/world b'hi'",)),)),
    "tutorial.rst": Page(
        blocks=(
            Expect("trio.run(main)", lines=("connected: True",)),
            Expect('subscribe("tutorial/#"', lines=("tutorial/hello b'hi'",)),
            Expect("publish_tracked", lines=("1 0",)),
            Expect(
                "async def temperatures",
                lines=tuple(f"temperature sensors/{i}/temp {20 + i}.0" for i in range(3)),
            ),
        )
    ),
    "connecting.rst": Page(
        broker={"tls": True, "websockets_tls": True},
        prepare=_tls_client_files,
        blocks=(
            Expect("The same, from a URL", lines=("connected: True", "connected: True")),
            Expect(
                "SO_RCVBUF",
                check="""
                    assert options.transport.receive_buffer_size == 1 << 20
                    assert options.transport.local_address == "192.168.1.2"
                """,
            ),
            Expect(
                "AmazonRootCA1.pem",
                # The private CA and the client certificate exist here (see _tls_client_files),
                # so the ``tls`` transport really connects, loading the encrypted key.
                check="""
                    local = MqttOptions("sensor-7", "localhost", 8883, transport=tls)
                    async with open_mqtt_connection(local) as conn:
                        assert conn.connected
                    assert tuple(aws.alpn_protocols) == ("x-amzn-mqtt-ca",)
                """,
            ),
            Expect(
                "request_modifier=add_token",
                given="""
                    tokens = []

                    async def fetch_token():
                        tokens.append("t0k3n")
                        return tokens[-1]
                """,
                # The same transport (WSS, header, request modifier) against the page's broker.
                check="""
                    local = MqttOptions("browser-bridge", "localhost", 443, transport=transport)
                    async with open_mqtt_connection(local) as conn:
                        assert conn.connected
                    assert tokens == ["t0k3n"]
                """,
            ),
            Expect(
                "UnixSocketTransport(",
                check='assert str(options.transport.path) == "/run/mosquitto/mqtt.sock"',
            ),
            Expect(
                "HttpProxy(",
                check="""
                    assert (transport.host, transport.port) == ("proxy.corp.example", 3128)
                    assert isinstance(transport.inner, TlsTransport)
                """,
            ),
            Expect(
                "Socks5Proxy(",
                check="assert transport.remote_dns and transport.port == 1080",
            ),
            Expect(
                'proxy_from_url("socks5h://',
                given="from trio_mqtt import proxy_from_url  # the module this reference is of",
                check="assert isinstance(transport, Socks5Proxy) and transport.remote_dns",
            ),
        ),
    ),
    "events.rst": Page(
        blocks=(
            Expect(
                "async for event in conn",
                around=_in_connection(
                    "events",
                    'await conn.client.subscribe("docs/events", QoS.AT_LEAST_ONCE)',
                    'await conn.client.publish("docs/events", b"1", qos=QoS.AT_LEAST_ONCE)',
                ),
                stop_at="message docs/events",
            ),
            Expect(
                "except ConnectionLost",
                # Through a fault proxy that the stand-in for the reader's handle() cuts after
                # the first event: the block prints the loss, and its next poll() reconnects.
                around="""
                    from trio_mqtt import MqttOptions, open_mqtt_connection
                    from trio_mqtt.testing import open_fault_proxy

                    async with open_fault_proxy("localhost", 1883) as proxy:
                        options = MqttOptions("docs-events-poll", proxy.host, proxy.port)
                        async with open_mqtt_connection(options) as conn:
                            BLOCK
                """,
                given="""
                    acks = []

                    def handle(event):
                        print(type(event).__name__, type(event.packet).__name__)
                        if type(event.packet).__name__ == "ConnAck":
                            acks.append(event)
                            if len(acks) == 1:
                                proxy.cut()
                            else:
                                print("reconnected")
                """,
                lines=(
                    "Outgoing Connect",
                    "Incoming ConnAck",
                    "lost: .+",
                    "Outgoing Connect",
                    "Incoming ConnAck",
                    "reconnected",
                ),
                stop_at="reconnected",
                stop_grouped=True,  # open_fault_proxy's nursery groups what leaves its block
            ),
            Expect(
                'getLogger("trio_mqtt.packets").setLevel',
                check="""
                    packets = logging.getLogger("trio_mqtt.packets")
                    assert packets.isEnabledFor(logging.DEBUG)
                    assert not logging.getLogger("trio_mqtt").isEnabledFor(logging.DEBUG)
                """,
            ),
        ),
    ),
    "backpressure.rst": Page(
        blocks=(
            Expect("bytes_per_second=64_000", lines=("throttled for more than 0.1 s: True",)),
            Expect(
                "publish_nowait",
                around="""
                    from trio_mqtt import QoS, open_mqtt_connection

                    url = "mqtt://localhost/?client_id=docs-backpressure"
                    async with open_mqtt_connection(url) as conn:
                        client = conn.client
                        async with conn.route("sensors/a", qos=QoS.AT_LEAST_ONCE) as route:
                            BLOCK
                            received = [(await route.receive()).payload for _ in readings]
                """,
                given="readings = [str(n).encode() for n in range(50)]  # the reader's data",
                check="assert received == readings",
            ),
            Expect(
                "message_batches",
                around=_in_connection(
                    "batches",
                    'await conn.client.subscribe("sensors/#", QoS.AT_LEAST_ONCE)',
                    *(
                        f'await conn.client.publish("sensors/b", b"{n}", QoS.AT_LEAST_ONCE)'
                        for n in range(3)
                    ),
                ),
                given="""
                    def handle(message):  # the reader's code
                        print(message.topic, message.payload)
                """,
                lines=("sensors/b b'0'", "sensors/b b'1'", "sensors/b b'2'"),
                stop_at="sensors/b b'2'",
            ),
        )
    ),
    "migrating.rst": Page(
        blocks=(
            Expect(
                "paho.mqtt.client",
                lines=("sensors/a b'21.5'",),
                stop_at="sensors/a b'21.5'",
            ),
            Expect(
                'MqttOptions("demo", "localhost", 1883))',
                lines=("sensors/a b'21.5'",),
                stop_at="sensors/a b'21.5'",
            ),
            Expect(
                'aiomqtt.Client("localhost")',
                lines=("sensors/a b'21.5'",),
                stop_at="sensors/a b'21.5'",
                given="import aiomqtt",
                event_loop="asyncio",
            ),
            Expect(
                'open_mqtt_connection("mqtt://localhost")',
                lines=("sensors/a b'21.5'",),
                stop_at="sensors/a b'21.5'",
            ),
            Expect(
                "print(await conn.poll())",
                stop_at=r"Incoming\(packet=Publish\(.*topic='sensors/a'.*",
            ),
        )
    ),
    "mqtt5.rst": Page(
        blocks=(
            Expect(
                "LINE_3 = Properties(topic_alias=1)",
                lines=(
                    "factory/hall-2/line-3/speed b'71'",
                    "factory/hall-2/line-3/speed b'72'",
                ),
            ),
            Expect(
                "content_type=",
                around="""
                    from trio_mqtt import MqttOptions, ProtocolVersion, QoS, open_mqtt_connection

                    v5 = MqttOptions("docs-mqtt5", "localhost", protocol_version=ProtocolVersion.V5)
                    async with open_mqtt_connection(v5) as conn:
                        client = conn.client
                        async with conn.route("requests/lamp", qos=QoS.AT_LEAST_ONCE) as requests:
                            BLOCK
                            request = await requests.receive()
                """,
                check="""
                    assert request.payload == b'{"on": true}'
                    assert request.properties.content_type == "application/json"
                    assert request.properties.response_topic == "replies/lamp"
                    assert request.properties.correlation_data == b"req-42"
                    assert ("origin", "kitchen") in request.properties.user_properties
                """,
            ),
        )
    ),
    "reconnects.rst": Page(
        blocks=(
            Expect(
                "ReconnectPolicy(initial_delay",
                check="assert options.reconnect.max_delay == 30",
            ),
            Expect("async def refresh_token", lines=("connected with b'token-42'",)),
            Expect("standby.example", lines=("connected to localhost 1883",)),
            Expect(
                "async def credentials_for",
                check="assert options.follow_redirects and options.before_connect",
            ),
            Expect(
                "SqliteSessionStore(",
                check='assert options.session_store.path_for("meter-17").exists()',
            ),
        )
    ),
    "durable.rst": Page(
        blocks=(
            Expect(
                'SqliteSessionStore("meter-outbox")',
                lines=("expired: 0 dropped: 0",),
                # every reading went out and was acknowledged: nothing is left queued
                check="""
                    from trio_mqtt.sansio import SessionSnapshot

                    store = options.session_store
                    assert store.path_for("meter-17").exists()
                    assert store.read("meter-17") == SessionSnapshot()
                """,
            ),
        )
    ),
    "routes.rst": Page(
        blocks=(
            Expect(
                "store_temperatures",
                given="""
                    from trio_mqtt import open_mqtt_connection

                    class Database:  # the reader's database
                        async def insert(self, topic, payload):
                            print("insert", topic, payload)

                    database = Database()
                """,
                # A retained reading is there before the route subscribes, so it arrives.
                check="""
                    url = "mqtt://localhost/?client_id=docs-routes"
                    async with open_mqtt_connection(url) as conn:
                        await conn.client.publish(
                            "sensors/kitchen/temp", b"21.5", QoS.AT_LEAST_ONCE, retain=True
                        )
                        await store_temperatures(conn)
                """,
                lines=("insert sensors/kitchen/temp b'21.5'",),
                stop_at="insert sensors/kitchen/temp b'21.5'",
            ),
            Expect(
                "async def charge(order: Publish)",
                # A retained order is there before the route subscribes, so it arrives; the
                # stop raised in the handler comes out of handle() as it was raised.
                check="""
                    url = "mqtt://localhost/?client_id=docs-orders&manual_acks=true"
                    async with open_mqtt_connection(url) as conn:
                        await conn.client.publish("orders/alice", b"A-1", 1, retain=True)
                        await process_orders(conn)
                """,
                lines=("charged orders/alice A-1",),
                stop_at="charged orders/alice A-1",
            ),
        )
    ),
    "observability.rst": Page(
        blocks=(
            Expect(
                "exporter = InMemorySpanExporter()",
                lines=(
                    "handling shop/orders/1",
                    "(send|process) shop/orders/1 (PRODUCER|CONSUMER) [0-9a-f]{32}",
                    "(send|process) shop/orders/1 (PRODUCER|CONSUMER) [0-9a-f]{32}",
                ),
                # what the page promises: the two spans share one trace
                check="""
                    spans = exporter.get_finished_spans()
                    assert sorted(s.name for s in spans) == [
                        "process shop/orders/1", "send shop/orders/1"
                    ]
                    assert len({s.context.trace_id for s in spans}) == 1
                """,
            ),
            Expect(
                "reader = InMemoryMetricReader()",
                lines=("trio_mqtt.publishes_sent 1",),
            ),
        )
    ),
    "sync.rst": Page(
        blocks=(
            Expect(
                'connect("mqtt://localhost:1883/?client_id=reader")',
                # A retained reading, so that the reader gets one message once subscribed.
                given="""
                    from trio_mqtt import QoS, open_mqtt_connection

                    async with open_mqtt_connection("mqtt://localhost/?client_id=docs-sync") as c:
                        await c.client.publish("sensors/kitchen", b"21.5", 1, retain=True)
                """,
                lines=("sensors/kitchen b'21.5'",),
                stop_at="sensors/kitchen b'21.5'",
            ),
            Expect(
                "for event in connection:",
                around="""
                    from trio_mqtt.sync import connect

                    client, connection = connect("mqtt://localhost/?client_id=docs-sync-events")
                    with connection, client:
                        BLOCK
                """,
                stop_at=r"Incoming\(packet=ConnAck\(.*",
            ),
            Expect(
                'trio_mqtt.sync.connect("mqtt://localhost/?client_id=demo")',
                lines=("hello/world b'hi'",),
            ),
        )
    ),
    "reference.rst": Page(
        blocks=(
            Expect(
                "message.matches(",
                check="assert not topic_matches(message.topic, 'sensors/+')",
            ),
            Expect(
                "open_fault_proxy(broker.host, broker.port)",
                given="""
                    from trio_mqtt import MqttOptions  # the names of the modules documented
                    from trio_mqtt.testing import MosquittoBroker, open_fault_proxy
                """,
                around="""
                    with MosquittoBroker() as broker:
                        BLOCK
                """,
                check="assert (options.host, options.port) == (proxy.host, proxy.port)",
            ),
        )
    ),
    "testing.rst": Page(
        blocks=(
            Expect(
                "def test_tls(mosquitto_factory)",
                given="""
                    from trio_mqtt.testing import MosquittoBroker

                    brokers = []

                    def mosquitto_factory(**options):  # what the pytest fixture does
                        broker = MosquittoBroker(**options)
                        brokers.append(broker)
                        broker.start()
                        return broker
                """,
                check="""
                    try:
                        test_tls(mosquitto_factory)
                        assert brokers[0].running
                    finally:
                        for broker in brokers:
                            broker.close()
                """,
            ),
            Expect(
                "test_client_survives_a_broker_restart",
                given="import trio  # the page's test modules start with it",
                check="""
                    with MosquittoBroker() as broker:
                        trio.run(test_client_survives_a_broker_restart, broker)
                        assert broker.running
                """,
            ),
            Expect(
                "MosquittoBroker(websockets=True)",
                lines=(r"mqtt://127\.0\.0\.1:\d+ ws://127\.0\.0\.1:\d+/",),
            ),
            Expect(
                "test_survives_a_cut",
                check="""
                    with MosquittoBroker() as broker:
                        trio.run(test_survives_a_cut, broker)
                """,
            ),
            Expect(
                "EmbeddedBroker(users=",
                lines=(r"mqtt://127\.0\.0\.1:\d+ 0",),
            ),
        )
    ),
    "broker.rst": Page(
        blocks=(
            Expect(
                'subscribe("greetings/#"',
                lines=(r"greetings/en b'hello'", r"mqtt://127\.0\.0\.1:\d+ 1"),
            ),
            Expect(
                'Listener("ws"',
                lines=(r"mqtt://127\.0\.0\.1:\d+ ws://127\.0\.0\.1:\d+/mqtt",),
            ),
            Expect("AccessControl.parse", lines=()),
        )
    ),
}

#: Python blocks that are not run, by (page, anchor), with the reason (none today: keep it so).
NOT_RUN: dict[tuple[str, str], str] = {}


# ----------------------------------------------------------------------------- running pages


def _expectation(block: Block) -> Expect | None:
    page = EXPECTED.get(block.page)
    if page is None:
        return None
    found = [expect for expect in page.blocks if expect.anchor in block.code]
    return found[0] if len(found) == 1 else None


def _placed(block: Block, around: str) -> str:
    """The block's code, put into its ``around`` template when it has one."""
    if not around:
        return block.code
    template = textwrap.dedent(around)
    match = re.search(r"^( *)BLOCK$", template, re.M)
    assert match is not None, f"no BLOCK line in the template for {block.name}"
    placed = textwrap.indent(block.code, match[1]).rstrip("\n")
    return template[: match.start()] + placed + template[match.end() :]


def _not_run(block: Block) -> str | None:
    for (page, anchor), reason in NOT_RUN.items():
        if page == block.page and anchor in block.code:
            return reason
    return None


def _run_blocks(page: str) -> list[Block]:
    return [block for block in BLOCKS if block.page == page and _not_run(block) is None]


def _addresses(broker: MosquittoBroker, options: dict[str, Any]) -> dict[str, list[Any]]:
    """Where the docs' broker addresses lead: the page's private broker's listeners."""
    host = broker.host
    addresses: dict[str, list[Any]] = {"localhost:1883": [host, broker.port]}
    if options.get("tls"):
        addresses["localhost:8883"] = [host, broker.tls_port]
    if options.get("websockets"):
        addresses["localhost:80"] = [host, broker.ws_port]
    if options.get("websockets_tls"):
        addresses["localhost:443"] = [host, broker.wss_port]
    return addresses


@dataclass(frozen=True)
class PageRun:
    returncode: int
    stderr: str
    outcomes: dict[str, dict[str, Any]]


def _run_page(page: str, tmp_path: Path) -> PageRun:
    config = EXPECTED.get(page, Page(blocks=()))
    jobs = []
    for block in _run_blocks(page):
        expect = _expectation(block)
        jobs.append(
            {
                "name": block.name,
                "code": _placed(block, expect.around if expect else ""),
                "given": textwrap.dedent(expect.given) if expect else "",
                "check": textwrap.dedent(expect.check) if expect else "",
                "stop_at": expect.stop_at if expect else None,
                "event_loop": expect.event_loop if expect else "trio",
            }
        )
    with MosquittoBroker(**config.broker) as broker:
        job_path = tmp_path / f"{page}.job.json"
        result_path = tmp_path / f"{page}.result.json"
        job = {
            "blocks": jobs,
            "addresses": _addresses(broker, config.broker),
            "block_timeout": BLOCK_TIMEOUT,
            "page_timeout": PAGE_TIMEOUT - 5,
        }
        job_path.write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT, "PYTHONUNBUFFERED": "1"}
        if config.broker.get("tls") or config.broker.get("websockets_tls"):
            env["SSL_CERT_FILE"] = str(broker.ca_pem_path)
        work = tmp_path / f"{page}.cwd"
        work.mkdir()
        if config.prepare is not None:
            config.prepare(broker, work)
        command = [sys.executable, "-W", "error", str(RUNNER), str(job_path), str(result_path)]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=PAGE_TIMEOUT,
                check=False,
                cwd=work,
                env=env,
            )
            returncode, stderr = result.returncode, result.stderr
        except subprocess.TimeoutExpired as exc:
            returncode, stderr = -1, f"the page took over {PAGE_TIMEOUT} s: {exc.stderr!r}"
    outcomes: list[dict[str, Any]] = []
    if result_path.exists():
        outcomes = json.loads(result_path.read_text(encoding="utf-8"))
    return PageRun(returncode, stderr, {o["name"]: o for o in outcomes})


@pytest.fixture(scope="module")
def page_runs() -> dict[str, PageRun]:
    """Each page's run, made by the first of its tests and read by the others."""
    return {}


# ----------------------------------------------------------------------------- the tests


def test_blocks_are_found() -> None:
    # The parser must see the blocks the pages are known to have, or every test below would
    # pass vacuously.
    by_page = {page.name: sum(1 for b in BLOCKS if b.page == page.name) for page in PAGES}
    assert by_page["tutorial.rst"] >= 4
    assert by_page["connecting.rst"] >= 7
    assert by_page["sync.rst"] >= 2  # ``::`` literal blocks


def test_every_block_has_an_expectation() -> None:
    missing = [
        block.name for block in BLOCKS if _not_run(block) is None and _expectation(block) is None
    ]
    assert missing == [], (
        "these docs code blocks have no entry (or an anchor that is not unique) in "
        "tests/test_docs_code.py EXPECTED: say what running them must show"
    )


def test_every_expectation_has_its_block() -> None:
    stale = []
    for page, config in EXPECTED.items():
        codes = [block.code for block in BLOCKS if block.page == page]
        stale += [
            f"{page}: {expect.anchor!r}"
            for expect in config.blocks
            if sum(expect.anchor in code for code in codes) != 1
        ]
    stale += [
        f"{page}: {anchor!r}"
        for page, anchor in NOT_RUN
        if sum(anchor in b.code for b in BLOCKS if b.page == page) != 1
    ]
    assert stale == []


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if _not_run(b) is None], ids=lambda block: block.name
)
def test_block_runs(
    block: Block, page_runs: dict[str, PageRun], tmp_path_factory: pytest.TempPathFactory
) -> None:
    if block.page not in page_runs:
        page_runs[block.page] = _run_page(block.page, tmp_path_factory.mktemp("docs"))
    run = page_runs[block.page]
    outcome = run.outcomes.get(block.name)
    assert outcome is not None, f"not reached (an earlier block failed):\n{run.stderr}"
    assert outcome["error"] is None, outcome["error"]
    expect = _expectation(block)
    assert expect is not None
    if expect.stop_at is not None:
        assert outcome["stopped"], f"never printed {expect.stop_at!r}: {outcome['lines']}"
        assert outcome["grouped"] == expect.stop_grouped
    if expect.lines is not None:
        lines = outcome["lines"]
        assert len(lines) == len(expect.lines), lines
        for pattern, line in zip(expect.lines, lines, strict=True):
            assert re.fullmatch(pattern, line), (pattern, lines)
    if block == _run_blocks(block.page)[-1]:  # the page's interpreter ended well
        assert run.returncode == 0, run.stderr
        assert _unexplained(run.stderr, block.page) == ""


#: what a block stopped by the test (``stop_at``) may log: it leaves its connection at once,
#: and a QoS 1/2 publish whose acknowledgement was still on its way is reported as unfinished
_ABORT_NOTICE = re.compile(r"the session ended with \d+ QoS 1/2 publishes sent but not .*\n?")


def _unexplained(stderr: str, page: str) -> str:
    """``stderr`` without the notices that stopping a block at its ``stop_at`` line explains."""
    if any(expect.stop_at is not None for expect in EXPECTED[page].blocks):
        return _ABORT_NOTICE.sub("", stderr)
    return stderr


def test_the_runner_stops_endless_blocks_and_reports_broken_ones(tmp_path: Path) -> None:
    # The runner itself, on blocks made for it: a loop that never ends on its own is stopped
    # at its line, a block that fails is reported with its traceback, and nothing after it
    # runs (later blocks may depend on it).
    blocks = [
        {"name": "endless", "code": "n = 0\nwhile True:\n    n += 1\n    print(n)\n"},
        {"name": "awaits", "code": "import trio\nawait trio.sleep(0)\nprint('n was', n)\n"},
        {"name": "broken", "code": "print(undefined_name)\n"},
        {"name": "after", "code": "print('never')\n"},
    ]
    blocks[0]["stop_at"] = "3"
    job = {"blocks": blocks, "addresses": {}, "block_timeout": 5, "page_timeout": 20}
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(tmp_path / "job.json"), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
        check=False,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )
    assert result.returncode == 1, result.stderr
    outcomes = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [o["name"] for o in outcomes] == ["endless", "awaits", "broken"]
    assert outcomes[0]["lines"] == ["1", "2", "3"]
    assert outcomes[0]["stopped"]
    assert outcomes[0]["error"] is None
    assert outcomes[1]["lines"] == ["n was 3"]
    assert "NameError: name 'undefined_name'" in outcomes[2]["error"]
