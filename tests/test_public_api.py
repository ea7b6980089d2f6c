"""The public API is what ``__all__`` says; changing it is a deliberate act."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import trio_mqtt

EXPECTED = {
    "BeforeConnectError",
    "CertificateVerificationError",
    "Client",
    "ConnAck",
    "ConnectReturnCode",
    "ConnectTimeout",
    "ConnectionEvent",
    "ConnectionClosed",
    "ConnectionLost",
    "ConnectionRefused",
    "ConnectionStatistics",
    "Disconnected",
    "DisconnectedByBroker",
    "HttpProxy",
    "Incoming",
    "InvalidOptionError",
    "InvalidTopicError",
    "KeepAliveTimeout",
    "LocalProtocolError",
    "MalformedPacketError",
    "MemorySessionStore",
    "MessageStream",
    "MqttConnection",
    "MqttError",
    "MqttOptions",
    "Outgoing",
    "PacketTooLargeError",
    "Properties",
    "ProtocolError",
    "ProtocolVersion",
    "ProxyError",
    "Publish",
    "PublishDiscarded",
    "PublishDropped",
    "PublishResult",
    "QoS",
    "QueueFullError",
    "QueueFullPolicy",
    "ReasonCode",
    "Reconnecting",
    "ReconnectPolicy",
    "RemoteProtocolError",
    "RequestsDone",
    "RetainHandling",
    "SessionLost",
    "SessionStore",
    "SessionStoreError",
    "Socks5Proxy",
    "SqliteSessionStore",
    "StreamLayer",
    "SubscribeResult",
    "Subscription",
    "SubscriptionRefused",
    "TcpTransport",
    "Throttle",
    "TlsConfigurationError",
    "TlsError",
    "TlsTransport",
    "Tracker",
    "Transport",
    "UnixSocketTransport",
    "UnknownPacketIdError",
    "UnsubscribeResult",
    "WebSocketError",
    "WebSocketRequest",
    "WebSocketTransport",
    "Will",
    "open_mqtt_connection",
    "proxy_from_url",
    "topic_matches",
}


def test_all_is_the_expected_snapshot() -> None:
    assert set(trio_mqtt.__all__) == EXPECTED
    assert len(trio_mqtt.__all__) == len(EXPECTED), "duplicates in __all__"


def test_every_public_name_exists_and_is_documented() -> None:
    modules = (
        "trio_mqtt",
        "trio_mqtt.sansio",
        "trio_mqtt.testing",
        "trio_mqtt.broker",
        "trio_mqtt.otel",
    )
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if callable(value) or isinstance(value, type):
                assert (value.__doc__ or "").strip(), f"{module_name}.{name} has no docstring"


def test_no_builtin_is_shadowed() -> None:
    import builtins

    for name in trio_mqtt.__all__:
        assert not hasattr(builtins, name), name


def test_package_ships_py_typed() -> None:
    assert (Path(trio_mqtt.__file__).parent / "py.typed").is_file()


def test_built_wheel_contains_py_typed(tmp_path: Path) -> None:
    root = Path(trio_mqtt.__file__).parent.parent
    # hatchling (the build backend, a test dependency) builds the wheel in-process; pip is
    # not always in the test environment (uv does not install it).
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=root,
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("trio_mqtt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "trio_mqtt/py.typed" in names
    assert "trio_mqtt/_core/_state.py" in names
    assert not any(name.startswith("tests/") for name in names)


def test_reference_lists_every_public_method() -> None:
    # The reference pages name the members of most classes explicitly (to keep dataclass
    # fields out); a new method left out of such a list would silently go undocumented.
    docs = Path(__file__).resolve().parent.parent / "docs"
    directive = re.compile(
        r"\.\. (?:currentmodule|module):: ([\w.]+)\n"
        r"|\.\. autoclass:: ([\w.]+)(?:\(\))?\n((?:   .*\n)*)"
    )
    documented: dict[type, set[str]] = {}
    for page in sorted(docs.glob("*.rst")):
        current = "trio_mqtt"
        for match in directive.finditer(page.read_text()):
            if match.group(1):
                current = match.group(1)
                continue
            members = re.search(r":members: (.*(?:\n      .*)*)", match.group(3))
            if members is None:
                continue
            module_name, _, class_name = match.group(2).rpartition(".")
            cls = getattr(importlib.import_module(module_name or current), class_name)
            documented[cls] = {
                name.strip() for name in members.group(1).replace("\n", " ").split(",")
            }
    # a protocol's methods are documented once, on the protocol (SessionStore, Transport, ...)
    protocol_methods = set().union(
        *(names for cls, names in documented.items() if getattr(cls, "_is_protocol", False))
    )
    checked = 0
    for cls, listed in documented.items():
        for name, value in vars(cls).items():
            if name.startswith("_") or not (
                inspect.isfunction(value) or isinstance(value, property | classmethod)
            ):
                continue
            inherited = any(hasattr(base, name) for base in cls.__mro__[1:])
            # an attribute of the class docstring's "Attributes:" section is documented there
            in_docstring = re.search(rf"^\s+{name}(, \w+)?:", cls.__doc__ or "", re.M)
            covered = name in listed or inherited or name in protocol_methods or in_docstring
            assert covered, f"{cls.__name__}.{name} is not in the reference"
            checked += 1
    assert checked > 40


def test_optional_protocol_engines_load_only_when_used() -> None:
    # wsproto (WebSocket) and h11 (HTTP proxy) cost about 0.9 MiB of RSS; a program that uses
    # plain TCP or TLS should not pay for them
    code = (
        "import sys, trio_mqtt, trio_mqtt.sync, trio_mqtt.testing; "
        "print(sorted(m for m in ('wsproto', 'h11') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_every_public_name_has_a_reference_entry() -> None:
    # docstrings alone are not enough: each exported name needs an entry in docs/ (an
    # auto* or py:data directive), or it never appears in the built reference
    docs = Path(__file__).resolve().parent.parent / "docs"
    directive = re.compile(
        r"^\.\. (?:auto(?:class|function|exception|data|module)|py:data|py:function)"
        r":: ([\w.]+)",
        re.M,
    )
    entries = {
        name.rpartition(".")[2]
        for page in docs.glob("*.rst")
        for name in directive.findall(page.read_text())
    }
    modules = (
        "trio_mqtt",
        "trio_mqtt.sansio",
        "trio_mqtt.testing",
        "trio_mqtt.broker",
        "trio_mqtt.otel",
    )
    for module_name in modules:
        module = importlib.import_module(module_name)
        missing = sorted(set(module.__all__) - entries)
        assert not missing, f"{module_name}: no reference entry for {missing}"
