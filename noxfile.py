"""Task runner. ``nox`` alone runs the tests, lint, type check and docs build (what CI runs)."""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

MOSQUITTO_HINT = (
    "mosquitto (the MQTT broker the tests run against) is not installed.\n"
    "Install it with:  sudo apt-get install -y mosquitto mosquitto-clients   (Debian/Ubuntu)\n"
    "             or:  brew install mosquitto              (macOS)"
)


def find_mosquitto() -> str | None:
    """Return the mosquitto binary, looking in sbin folders that are often not on PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"):
        candidate = os.path.join(folder, "mosquitto")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_mosquitto(session: nox.Session, *, required: bool = True) -> None:
    """Install mosquitto (and mosquitto-clients) with apt when missing and we are root.

    mosquitto_sub/mosquitto_pub (mosquitto-clients) are what the CLI is tested side by side
    with; without them those tests are skipped. With ``required=False`` (the demo, which can
    also use a broker already answering on localhost:1883) a missing mosquitto is left for the
    command itself to report.
    """
    clients = shutil.which("mosquitto_sub") is not None
    if find_mosquitto() and clients:
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("apt-get", "update", "-qq", external=True)
        packages = ["mosquitto", "mosquitto-clients"]
        session.run("apt-get", "install", "-y", "-qq", *packages, external=True)
        if find_mosquitto():
            return
    if required and not find_mosquitto():
        session.error(MOSQUITTO_HINT)


#: Integration tests that take a broker from the ``mosquitto`` fixtures; they run a second time
#: against the embedded broker (TRIO_MQTT_TEST_BROKER=embedded, see tests/conftest.py).
EMBEDDED_BROKER_TESTS = (
    "tests/test_ack_order.py",
    "tests/test_batches.py",
    "tests/test_broker_policies.py",
    "tests/test_chaos.py",
    "tests/test_cli.py",
    "tests/test_connection.py",
    "tests/test_examples.py",
    "tests/test_explicit_aliases.py",
    "tests/test_faults_mqtt.py",
    "tests/test_features.py",
    "tests/test_readme.py",
    "tests/test_store_crash.py",
    "tests/test_store_crash_outbox.py",
    "tests/test_store_crash_subscriber.py",
    "tests/test_sync.py",
    "tests/test_sync_lifecycle.py",
    "tests/test_throttle.py",
)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite against private mosquitto brokers, then the integration tests again
    against the embedded broker (``nox -s tests -- ARGS`` runs only ``pytest ARGS``)."""
    ensure_mosquitto(session)
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)
    if not session.posargs:
        session.run("pytest", *EMBEDDED_BROKER_TESTS, env={"TRIO_MQTT_TEST_BROKER": "embedded"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    paths = ("trio_mqtt", "tests", "bench", "examples", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "trio_mqtt")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs; any warning is an error."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against peer libraries, side by side in one run."""
    ensure_mosquitto(session)
    session.install("-e", ".", "-r", "bench/requirements.txt")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: a publish/subscribe round trip through a broker (the embedded one if nothing
    answers on localhost:1883, so no mosquitto is needed)."""
    session.install("-e", ".")
    session.run("trio-mqtt", "demo", *session.posargs)
