"""A private mosquitto broker in a subprocess, for tests.

Theory of operation
-------------------
Each :class:`MosquittoBroker` owns a temporary directory holding its generated configuration,
its log, its password file, TLS material (made with trustme, imported only when TLS is asked
for), its persistence database and its Unix socket. Ports are chosen by binding port 0 on
127.0.0.1 and closing the socket; if mosquitto still finds one taken ("Address already in use"
in its log) the first start picks fresh ports and tries again. After that the ports are pinned,
so :meth:`MosquittoBroker.restart` brings the broker back where clients expect it.

Every listener binds 127.0.0.1 only (websocket listeners also need ``socket_domain ipv4``, or
libwebsockets binds every interface), and nothing ever uses port 1883. The broker counts as
ready once a TCP (or Unix socket) connection to every listener succeeds; if the process exits
first, or the deadline passes, the error carries the broker's log.

The class is synchronous on purpose: starting takes a few tens of milliseconds, so Trio tests
can call :meth:`~MosquittoBroker.start` directly, or wrap a restart in
``trio.to_thread.run_sync``. A :func:`weakref.finalize` hook kills a forgotten broker when its
object is collected or the interpreter exits, and a watchdog shell (see :class:`_Child`) kills
it when the interpreter itself is killed, so no broker outlives the tests that started it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._endpoints import BrokerEndpoints

__all__ = ["INSTALL_HINT", "MosquittoBroker", "MosquittoError", "find_mosquitto"]

INSTALL_HINT = (
    "mosquitto, the MQTT broker trio_mqtt.testing runs for tests, was not found on PATH nor in "
    "/usr/sbin, /usr/local/sbin or /opt/homebrew/sbin. Install it with\n"
    "    sudo apt-get install mosquitto      (Debian, Ubuntu)\n"
    "    sudo dnf install mosquitto          (Fedora)\n"
    "    brew install mosquitto              (macOS)\n"
    "or pass executable='/path/to/mosquitto'."
)

_SBIN_FOLDERS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
_LOCALHOST = "127.0.0.1"
_ADDRESS_IN_USE = "Address already in use"
_START_ATTEMPTS = 4
_SHELL = "/bin/sh"
# Run as `sh -c SCRIPT BROKER_PID FOLDER`: wait for our end of the pipe to close, then clean up.
_WATCHDOG_SCRIPT = 'read _ ; kill -9 "$0" 2>/dev/null ; rm -rf "$1"'
# mosquitto logs this (at the "information" level) once every listener is open.
_RUNNING = re.compile(r"mosquitto version \S+ running")
# mosquitto 2.x password hashes: PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt ("$7$" format).
_HASH_ROUNDS = 101
_SALT_BYTES = 12


class MosquittoError(RuntimeError):
    """The broker could not be found, configured, started or reached."""


def find_mosquitto() -> str | None:
    """Locate the mosquitto binary.

    Returns:
        The path found on ``PATH`` or in the usual ``sbin`` folders (which are often not on a
        normal user's ``PATH``), or None.
    """
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in _SBIN_FOLDERS:
        candidate = os.path.join(folder, "mosquitto")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _password_line(user: str, password: str) -> str:
    """One password file line, hashed the way ``mosquitto_passwd`` does it."""
    if ":" in user or "\n" in user or "\n" in password:
        raise ValueError(f"user name {user!r} or its password cannot go in a password file")
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _HASH_ROUNDS)
    encoded_salt = base64.b64encode(salt).decode()
    encoded_digest = base64.b64encode(digest).decode()
    return f"{user}:$7${_HASH_ROUNDS}${encoded_salt}${encoded_digest}\n"


class _Child:
    """One mosquitto process, plus a watchdog that kills it if this Python process dies.

    Finalizers do not run when Python is killed (SIGKILL, or SIGTERM with no handler, as from
    ``timeout``), which would leave brokers running forever. So next to each broker runs a tiny
    ``sh`` that blocks reading a pipe whose only writer is us: when we die, the pipe closes, the
    read returns, and the shell SIGKILLs the broker and deletes its directory. On every normal
    path the watchdog is killed first (``disarm``), so it never signals a process id that may
    have been reused.
    """

    def __init__(self, command: list[str], output: Any, folder: Path) -> None:
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._watchdog: subprocess.Popen[bytes] | None = None
        if os.path.exists(_SHELL):
            self._watchdog = subprocess.Popen(
                [_SHELL, "-c", _WATCHDOG_SCRIPT, str(self.process.pid), str(folder)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        self.disarm()
        return False

    def disarm(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
            if watchdog.stdin is not None:
                watchdog.stdin.close()

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL if the broker has not exited after ``timeout`` seconds."""
        self.disarm()
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()

    def kill(self) -> None:
        self.disarm()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _cleanup(children: list[_Child], folder: Path) -> None:
    """Finalizer: kill whatever is still running and delete the broker's files."""
    for child in children:
        child.kill()
    children.clear()
    shutil.rmtree(folder, ignore_errors=True)


class MosquittoBroker(BrokerEndpoints):
    """A mosquitto process of its own, listening on free ports of 127.0.0.1.

    Use it as a context manager (start on entry; stop and delete its files on exit), or call
    :meth:`start`, :meth:`stop` and finally :meth:`close` yourself. The pytest fixtures
    ``mosquitto`` and ``mosquitto_factory`` (see :doc:`testing`) wrap it.

    Args:
        users: user name to password. A password file is written, and anonymous clients are
            refused unless ``allow_anonymous`` says otherwise.
        allow_anonymous: whether clients without a user name may connect; default: only when
            ``users`` is not given.
        tls: add an MQTT-over-TLS listener, with a certificate from a throwaway trustme CA for
            ``127.0.0.1`` and ``localhost`` (requires the ``trustme`` package).
        require_certificate: TLS listeners demand a client certificate signed by that CA
            (use :attr:`client_cert_path` and :attr:`client_key_path`).
        websockets: add an MQTT-over-WebSocket listener.
        websockets_tls: add an MQTT-over-secure-WebSocket listener (same certificates as TLS).
        unix_socket: add a listener on a Unix domain socket in the broker's directory.
        persistence: keep sessions and retained messages in a database in the broker's
            directory, which survives :meth:`restart` (mosquitto writes it when stopped cleanly,
            not when killed).
        max_inflight_messages: mosquitto's outgoing QoS 1/2 window per client (0 = unlimited).
        max_queued_messages: messages queued per offline or busy client (0 = unlimited).
        max_packet_size: largest packet the broker accepts, in bytes.
        max_keepalive: largest keep alive the broker allows (MQTT 5 clients are told it).
        extra_config: more configuration lines, appended verbatim.
        executable: the mosquitto binary; found with :func:`find_mosquitto` by default.
        log_types: mosquitto ``log_type`` values; ``all`` logs every packet, which helps when a
            test fails but slows heavy traffic. ``information`` is always added, because
            :meth:`start` waits for the line saying the broker is running.
        start_timeout: seconds :meth:`start` waits for every listener to accept connections.
        stop_timeout: seconds :meth:`stop` waits after SIGTERM before sending SIGKILL.

    Raises:
        MosquittoError: if no mosquitto binary can be found (the message says how to install
            one).
        ValueError: for contradictory options, such as ``require_certificate`` without a TLS
            listener.
    """

    #: The address every listener binds.
    host: str = _LOCALHOST

    _error_type = MosquittoError

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool | None = None,
        tls: bool = False,
        require_certificate: bool = False,
        websockets: bool = False,
        websockets_tls: bool = False,
        unix_socket: bool = False,
        persistence: bool = False,
        max_inflight_messages: int | None = None,
        max_queued_messages: int | None = None,
        max_packet_size: int | None = None,
        max_keepalive: int | None = None,
        extra_config: Sequence[str] = (),
        executable: str | None = None,
        log_types: Sequence[str] = ("all",),
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if require_certificate and not (tls or websockets_tls):
            raise ValueError("require_certificate needs tls=True or websockets_tls=True")
        if isinstance(extra_config, str):
            raise TypeError("extra_config is a sequence of lines, not one string")
        found = executable or find_mosquitto()
        if found is None:
            raise MosquittoError(INSTALL_HINT)
        self._executable = found
        self._users = dict(users or {})
        self._allow_anonymous = not self._users if allow_anonymous is None else allow_anonymous
        self._tls = tls
        self._require_certificate = require_certificate
        self._websockets = websockets
        self._websockets_tls = websockets_tls
        self._unix_socket = unix_socket
        self._persistence = persistence
        self._limits = {
            "max_inflight_messages": max_inflight_messages,
            "max_queued_messages": max_queued_messages,
            "max_packet_size": max_packet_size,
            "max_keepalive": max_keepalive,
        }
        self._extra_config = list(extra_config)
        self._log_types = list(log_types)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout

        self._dir = Path(tempfile.mkdtemp(prefix="trio-mqtt-mosquitto-"))
        self._children: list[_Child] = []
        self._finalizer = weakref.finalize(self, _cleanup, self._children, self._dir)
        self._closed = False
        self._ports_pinned = False
        self._ports: dict[str, int] = {}
        self._choose_ports()
        self._ca: Any = None
        self._client_cert: Any = None
        if tls or websockets_tls:
            self._make_certificates()
        if self._users:
            self._write_password_file()

    # ----------------------------------------------------------------- files and settings

    def _choose_ports(self) -> None:
        kinds = ["mqtt"]
        kinds += ["tls"] if self._tls else []
        kinds += ["ws"] if self._websockets else []
        kinds += ["wss"] if self._websockets_tls else []
        chosen: set[int] = set()
        for kind in kinds:
            port = _free_port()
            while port in chosen:
                port = _free_port()
            chosen.add(port)
            self._ports[kind] = port

    def _make_certificates(self) -> None:
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - trustme is a test dependency
            raise MosquittoError(
                "TLS listeners need the trustme package: pip install trustme"
            ) from exc
        self._ca = trustme.CA()
        server = self._ca.issue_cert(_LOCALHOST, "localhost")
        self._ca.cert_pem.write_to_path(str(self.ca_pem_path))
        server.private_key_pem.write_to_path(str(self._dir / "server-key.pem"))
        self._write_chain(server, self._dir / "server-cert.pem")
        self._client_cert = self._ca.issue_cert(
            "client.trio-mqtt.test", common_name="trio-mqtt-test-client"
        )
        self._client_cert.private_key_pem.write_to_path(str(self.client_key_path))
        self._write_chain(self._client_cert, self.client_cert_path)

    @staticmethod
    def _write_chain(leaf: Any, path: Path) -> None:
        with path.open("wb") as file:
            for pem in leaf.cert_chain_pems:
                file.write(pem.bytes())

    def _write_password_file(self) -> None:
        lines = [_password_line(user, password) for user, password in self._users.items()]
        path = self._dir / "passwords"
        path.write_text("".join(lines), encoding="utf-8")
        path.chmod(0o600)

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the password file's users (a broker made with ``users``).

        mosquitto reads the file when it starts, so the change applies from the next
        :meth:`start` or :meth:`restart` on; connections already open are not affected.

        Raises:
            ValueError: the broker was made without ``users``, or ``users`` is empty.
        """
        if not self._users or not users:
            raise ValueError("set_users needs a broker made with users= and at least one user")
        self._users = dict(users)
        self._write_password_file()

    def _tls_lines(self) -> list[str]:
        lines = [
            f"cafile {self.ca_pem_path}",
            f"certfile {self._dir / 'server-cert.pem'}",
            f"keyfile {self._dir / 'server-key.pem'}",
        ]
        if self._require_certificate:
            lines.append("require_certificate true")
        return lines

    def config_text(self) -> str:
        """The configuration file mosquitto is started with (for debugging)."""
        lines = ["# written by trio_mqtt.testing.MosquittoBroker"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, mosquitto would otherwise switch to the 'mosquitto' user, which cannot
            # write into our private temporary directory.
            lines.append("user root")
        lines.append(f"allow_anonymous {'true' if self._allow_anonymous else 'false'}")
        if self._users:
            lines.append(f"password_file {self._dir / 'passwords'}")
        if self._persistence:
            lines += ["persistence true", f"persistence_location {self._dir}/"]
        else:
            lines.append("persistence false")
        lines.append(f"log_dest file {self._log_path}")
        log_types = list(self._log_types)
        if not {"all", "information"} & set(log_types):
            log_types.append("information")  # start() waits for a line of this level
        lines += [f"log_type {kind}" for kind in log_types]
        lines.append("connection_messages true")
        # mosquitto leaves Nagle's algorithm on by default, which adds tens of milliseconds to
        # small packets such as acks; tests and benchmarks measure the client, not that delay.
        lines.append("set_tcp_nodelay true")
        lines += [f"{name} {value}" for name, value in self._limits.items() if value is not None]

        lines.append(f"listener {self._ports['mqtt']} {_LOCALHOST}")
        if self._tls:
            lines.append(f"listener {self._ports['tls']} {_LOCALHOST}")
            lines += self._tls_lines()
        if self._websockets:
            lines.append(f"listener {self._ports['ws']} {_LOCALHOST}")
            lines += ["protocol websockets", "socket_domain ipv4"]
        if self._websockets_tls:
            lines.append(f"listener {self._ports['wss']} {_LOCALHOST}")
            lines += ["protocol websockets", "socket_domain ipv4", *self._tls_lines()]
        if self._unix_socket:
            lines.append(f"listener 0 {self.unix_path}")
        lines += self._extra_config
        return "\n".join(lines) + "\n"

    @property
    def _log_path(self) -> Path:
        return self._dir / "mosquitto.log"

    @property
    def _output_path(self) -> Path:
        return self._dir / "mosquitto.out"

    # ----------------------------------------------------------------- process control

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return bool(self._children) and self._children[-1].alive()

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else None."""
        return self._children[-1].pid if self.running else None

    def start(self) -> None:
        """Start mosquitto and wait until every listener accepts connections.

        Raises:
            MosquittoError: if the broker is already running or closed, exits early, or does
                not become reachable within ``start_timeout``; the message includes its log.
        """
        if self._closed:
            raise MosquittoError("this broker was closed; create a new one")
        if self.running:
            raise MosquittoError("the broker is already running")
        for attempt in range(1, _START_ATTEMPTS + 1):
            self._reap()
            config = self._dir / "mosquitto.conf"
            config.write_text(self.config_text(), encoding="utf-8")
            log_offset = self._log_size()
            with self._output_path.open("ab") as output:
                child = _Child([self._executable, "-c", str(config)], output, self._dir)
            self._children.append(child)
            try:
                self._wait_until_ready(child.process, log_offset)
            except MosquittoError:
                child.stop(self._stop_timeout)
                port_taken = _ADDRESS_IN_USE in self._read_log(log_offset)
                if attempt == _START_ATTEMPTS or not port_taken:
                    raise
                # Someone took a port between our probe and mosquitto's bind.
                if self._ports_pinned:
                    time.sleep(0.05 * attempt)
                else:
                    self._choose_ports()
                self._mark_log(f"retrying start (attempt {attempt + 1})")
            else:
                self._ports_pinned = True
                return

    def _reap(self) -> None:
        """Forget brokers that have exited (and were waited for)."""
        self._children[:] = [child for child in self._children if child.alive()]

    def _mark_log(self, message: str) -> None:
        with self._output_path.open("a", encoding="utf-8") as output:
            output.write(f"--- trio_mqtt.testing: {message} ---\n")

    def _endpoints(self) -> list[tuple[str, Any]]:
        endpoints: list[tuple[str, Any]] = [
            (kind, (_LOCALHOST, port)) for kind, port in self._ports.items()
        ]
        if self._unix_socket:
            endpoints.append(("unix", str(self.unix_path)))
        return endpoints

    def _wait_until_ready(self, process: subprocess.Popen[bytes], log_offset: int) -> None:
        deadline = time.monotonic() + self._start_timeout
        # Another program may listen on a port we picked, so a successful connect alone proves
        # nothing: first wait for mosquitto to log that every listener is open.
        while not _RUNNING.search(self._read_log(log_offset)):
            self._check_alive(process, deadline, "to finish starting")
            time.sleep(0.005)  # bounded poll of the log file
        for kind, address in self._endpoints():
            family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
            while True:
                self._check_alive(process, deadline, f"to accept on its {kind} listener")
                try:
                    with socket.socket(family, socket.SOCK_STREAM) as probe:
                        probe.settimeout(max(0.01, min(deadline - time.monotonic(), 1.0)))
                        probe.connect(address)
                    break
                except OSError:
                    time.sleep(0.005)  # bounded poll: the listener is not up yet

    def _check_alive(self, process: subprocess.Popen[bytes], deadline: float, what: str) -> None:
        if process.poll() is not None:
            raise MosquittoError(
                f"mosquitto exited with status {process.returncode} while starting;"
                f" its log:\n{self.log}"
            )
        if time.monotonic() >= deadline:
            raise MosquittoError(
                f"waited {self._start_timeout} s for mosquitto {what}; its log:\n{self.log}"
            )

    def _read_log(self, offset: int) -> str:
        try:
            with self._log_path.open("rb") as file:
                file.seek(offset)
                return file.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _log_size(self) -> int:
        try:
            return self._log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

        With persistence, a clean stop writes the database that the next start loads. Stopping
        a broker that is not running does nothing. Its files stay until :meth:`close`.
        """
        for child in self._children:
            child.stop(self._stop_timeout)
        self._reap()

    def kill(self) -> None:
        """Kill the broker at once with SIGKILL (for tests of abrupt broker failure)."""
        for child in self._children:
            child.kill()
        self._reap()

    def __repr__(self) -> str:
        state = "running" if self.running else "closed" if self._closed else "stopped"
        return f"<MosquittoBroker {self.url} {state}>"

    # ----------------------------------------------------------------- addresses

    def _port(self, kind: str, option: str) -> int:
        try:
            return self._ports[kind]
        except KeyError:
            raise MosquittoError(
                f"this broker has no {kind} listener: pass {option}=True"
            ) from None

    @property
    def directory(self) -> Path:
        """The broker's temporary directory (configuration, log, database, certificates)."""
        return self._dir

    @property
    def port(self) -> int:
        """Port of the plain MQTT listener."""
        return self._ports["mqtt"]

    # ----------------------------------------------------------------- TLS material

    # ----------------------------------------------------------------- diagnostics

    @property
    def log(self) -> str:
        """Everything the broker logged so far, across restarts, including its console output."""
        parts = []
        for path in (self._output_path, self._log_path):
            try:
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
            except FileNotFoundError:
                continue
        return "".join(parts)
