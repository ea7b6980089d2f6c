"""Sphinx configuration for the trio-mqtt documentation (built by ``nox -s docs``)."""

from __future__ import annotations

import os
import sys

# Let autodoc import the package from this checkout when it is not installed.
sys.path.insert(0, os.path.abspath(".."))

project = "trio-mqtt"
author = "trio-mqtt developers"
copyright = "trio-mqtt developers"  # noqa: A001 - Sphinx's own setting name

try:
    from trio_mqtt import __version__ as release
except ImportError:  # pragma: no cover - a broken checkout still builds the prose
    release = "unknown"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
]

# The build machine has no network access, so no intersphinx: names from other projects and from
# the standard library that our signatures mention are listed here instead of being linked.
nitpicky = True
nitpick_ignore = [
    ("py:class", "trustme.CA"),
    ("py:class", "trustme.LeafCert"),
    # Error docstrings mention the attribute ``reason_code``, which autodoc does not list.
    ("py:attr", "reason_code"),
]
nitpick_ignore_regex = [
    # Standard library modules whose documentation we do not carry.
    (r"py:.*", r"(collections\.abc|pathlib|ssl|types|subprocess|enum|datetime|random)\..+"),
    (r"py:.*", r"(Path|SSLContext|TracebackType|Mapping|Sequence|Iterator|Iterable)"),
    (r"py:mod", r"(os|socket|ssl|time|subprocess|signal)"),
    (r"py:.*", r"os\.PathLike"),
    # trio's and trio-websocket's own names (trio.abc.Stream, trio.SocketStream, ...).
    (r"py:.*", r"(trio|trio_websocket)\..+"),
    # OpenTelemetry's names in trio_mqtt.otel's signatures (its docs are not carried here).
    (r"py:.*", r"opentelemetry\..+"),
    # Type variables (``T``, ``V``...) of generic classes and functions.
    (r"py:class", r"(trio_mqtt\.[\w.]+\.)?[A-Z]"),
    # Signatures name the private modules where public classes are defined; the classes
    # themselves are documented under their public names (trio_mqtt.ReasonCode...).
    (r"py:.*", r"trio_mqtt\._core\._(errors|reason_codes|packets|config)\..+"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "sphinx_rtd_theme"
html_title = f"trio-mqtt {release}"
exclude_patterns = ["_build"]
default_role = "py:obj"
