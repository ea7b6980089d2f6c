"""The package's structure rules, checked on its source.

* A module never reaches into another module's underscore attributes: it calls a method.
* The modules import each other without cycles.
* The synchronous client offers the asynchronous client's calls with the same signatures, and
  every ``*_nowait`` twin takes the arguments of its blocking method (trio's rule).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import trio_mqtt
from trio_mqtt import sync

PACKAGE = Path(trio_mqtt.__file__).parent


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = ast.parse(path.read_text(encoding="utf-8"))
    return found


MODULES = _modules()


def _private_names_defined(tree: ast.Module) -> set[str]:
    """Underscore names a module defines: functions, classes, attributes set on anything."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {name for name in names if name.startswith("_")}


def _reaches(tree: ast.Module) -> list[str]:
    """``x._name`` uses where this module does not define ``_name`` itself.

    ``self._name`` is the object's own state (the session's mixins share one object), and so
    is ``SomeClass._name`` for a class this module defines (its own, inherited members); any
    other receiver counts.
    """
    own = _private_names_defined(tree)
    own_receivers = {"self", "cls"} | {
        node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and not (isinstance(node.value, ast.Name) and node.value.id in own_receivers)
            and node.attr.startswith("_")
            and not (node.attr.startswith("__") and node.attr.endswith("__"))
            and node.attr not in own
        ):
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


# Underscore attributes of other libraries that trio-mqtt uses on purpose, with the reason.
ALLOWED = {
    "._replace",  # namedtuple's public API (urllib.parse.SplitResult)
    "._asdict",  # namedtuple's public API
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reaches_into_another_modules_private_attributes(module: str) -> None:
    reaches = [r for r in _reaches(MODULES[module]) if r.split(": ")[1] not in ALLOWED]
    assert reaches == [], f"{module} uses private attributes defined elsewhere: {reaches}"


def _imports(module: str, tree: ast.Module) -> set[str]:
    """trio_mqtt modules that ``module`` imports, anywhere in its body (lazy imports too)."""
    package = module if module in _packages() else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("trio_mqtt"):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("trio_mqtt"))
    found.discard(module)
    return {name for name in found if name in MODULES}


def _packages() -> set[str]:
    return {name for name in MODULES if (PACKAGE.parent / name.replace(".", "/")).is_dir()}


def _cycles() -> list[list[str]]:
    # a package's __init__ re-exports its modules: edges into a package are not cycles of
    # implementation, so only module-to-module edges count
    packages = _packages()
    graph = {
        name: {dep for dep in _imports(name, tree) if dep not in packages}
        for name, tree in MODULES.items()
        if name not in packages
    }
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    cycles.append(path)
                elif dep not in path and dep > start:
                    stack.append((dep, [*path, dep]))
    return cycles


def test_modules_import_each_other_without_cycles() -> None:
    assert _cycles() == []


# ---------------------------------------------------------------- the client surfaces


def _request_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


ASYNC_ONLY = {"aclose"}  # the sync handle closes with close() and `with`
SYNC_ONLY = {"closed"}


def test_sync_client_mirrors_the_async_client() -> None:
    async_methods = _request_methods(trio_mqtt.Client)
    sync_methods = _request_methods(sync.Client)
    assert set(async_methods) - ASYNC_ONLY == set(sync_methods) - SYNC_ONLY
    for name in sorted(set(async_methods) - ASYNC_ONLY):
        a, s = async_methods[name], sync_methods[name]
        assert list(a.parameters) == list(s.parameters), name
        for param in a.parameters:
            assert a.parameters[param].kind == s.parameters[param].kind, (name, param)
            assert a.parameters[param].default == s.parameters[param].default, (name, param)


@pytest.mark.parametrize("cls", [trio_mqtt.Client, sync.Client])
def test_every_blocking_request_has_a_nowait_twin_with_its_arguments(cls: type) -> None:
    methods = _request_methods(cls)
    blocking = {
        name
        for name in methods
        if not name.endswith("_nowait") and name not in {"clone", "close", "aclose", "closed"}
    }
    assert blocking
    for name in sorted(blocking):
        twin = methods.get(f"{name}_nowait")
        assert twin is not None, f"{cls.__name__}.{name} has no {name}_nowait"
        assert str(twin.parameters) == str(methods[name].parameters), name


#: (class, method) -> the annotation its return must name: reads of events are typed with the
#: public event union, never ``object``
EVENT_READS = [
    (trio_mqtt.MqttConnection, "poll", "ConnectionEvent"),
    (trio_mqtt.MqttConnection, "poll_nowait", "ConnectionEvent"),
    (trio_mqtt.MqttConnection, "__anext__", "ConnectionEvent"),
    (sync.Connection, "recv", "ConnectionEvent"),
    (sync.Connection, "recv_timeout", "ConnectionEvent"),
    (sync.Connection, "try_recv", "ConnectionEvent | None"),
    (sync.Connection, "iter", "Iterator[ConnectionEvent | MqttError]"),
    (sync.Connection, "__iter__", "Iterator[ConnectionEvent | MqttError]"),
]


@pytest.mark.parametrize(("cls", "name", "annotation"), EVENT_READS)
def test_event_reads_are_typed_with_the_public_event_union(
    cls: type, name: str, annotation: str
) -> None:
    returned = inspect.signature(getattr(cls, name)).return_annotation
    assert returned == annotation, f"{cls.__name__}.{name} returns {returned}"
