"""The embedded broker (:mod:`trio_mqtt.broker`) for tests, with the shape of MosquittoBroker.

Theory of operation
-------------------
:class:`EmbeddedBroker` runs :func:`~trio_mqtt.broker.open_mqtt_broker` in a Trio loop of its
own, in a daemon thread, so that it can be started and stopped synchronously exactly like
:class:`~trio_mqtt.testing.MosquittoBroker` (``start``, ``stop``, ``kill``, ``restart``,
``close``, a context manager) and offers the same properties (``host``, ``port``, ``url``,
``tls_url``, ``ws_url``, ``unix_url``, ``ca_pem_path``, ``client_ssl_context()``...). Tests
written for one run against the other: that is how the integration suite runs twice.

No binary is needed: ``pip install trio-mqtt`` is enough. Ports are chosen on the first start
and kept, so :meth:`EmbeddedBroker.restart` comes back where clients expect it. With
``persistence=True`` the broker's sessions, queued messages and retained messages survive
``stop``/``start`` and ``kill`` (the sans-IO state is kept in memory, not on disk).
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from .._core._broker import Broker, BrokerConfig
from ._endpoints import BrokerEndpoints

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]

_LOCALHOST = "127.0.0.1"


class _MonotonicClock(trio.abc.Clock):
    """``time.monotonic()`` as Trio's clock: one time base for every run of the broker thread, so
    deadlines kept across a restart (session expiry, will delay) stay meaningful. Trio's default
    clock starts each run at a random offset."""

    def start_clock(self) -> None:
        """Nothing to start."""

    def current_time(self) -> float:
        """Seconds of ``time.monotonic()``."""
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """How long to sleep until ``deadline``."""
        return deadline - time.monotonic()


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be configured or started."""


class EmbeddedBroker(BrokerEndpoints):
    """The embedded broker in a background thread, listening on free ports of 127.0.0.1.

    Takes the options of :class:`~trio_mqtt.testing.MosquittoBroker` that have a meaning here
    (``users``, ``allow_anonymous``, ``tls``, ``require_certificate``, ``websockets``,
    ``websockets_tls``, ``unix_socket``, ``persistence``, ``max_inflight_messages``,
    ``max_queued_messages``, ``max_packet_size``, ``max_keepalive``), plus ``config`` for any
    :class:`~trio_mqtt.broker.BrokerConfig` field. ``extra_config`` lines in mosquitto syntax
    are understood for ``max_topic_alias N`` only; any other line raises
    :class:`NotImplementedError` (the test suite's fixture turns that into a skip).
    """

    _error_type = EmbeddedBrokerError

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
        config: Mapping[str, Any] | None = None,
        log_types: Sequence[str] = (),
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        executable: str | None = None,
    ) -> None:
        del log_types, executable  # accepted for MosquittoBroker compatibility
        if require_certificate and not (tls or websockets_tls):
            raise ValueError("require_certificate needs tls=True or websockets_tls=True")
        if isinstance(extra_config, str):
            raise TypeError("extra_config is a sequence of lines, not one string")
        fields: dict[str, Any] = {}
        if users:
            fields["users"] = dict(users)
        if allow_anonymous is not None:
            fields["allow_anonymous"] = allow_anonymous
        if max_inflight_messages is not None:
            # as in mosquitto: both directions (our Receive Maximum, and the window towards
            # each client), 0 meaning no limit
            fields["max_inflight"] = max_inflight_messages or 65535
            fields["receive_maximum"] = max_inflight_messages or 65535
        if max_queued_messages is not None:
            fields["max_queued_messages"] = max_queued_messages or 100_000
        if max_packet_size is not None:
            fields["max_packet_size"] = max_packet_size
        if max_keepalive is not None:
            fields["server_keep_alive"] = max_keepalive
        for line in extra_config:
            words = line.split()
            if len(words) == 2 and words[0] == "max_topic_alias":
                fields["topic_alias_maximum"] = int(words[1])
            elif len(words) == 2 and words[0] == "acl_file":
                from ..broker._acl import AccessControl

                fields["authorize"] = AccessControl.from_file(words[1]).authorize
            else:
                raise NotImplementedError(f"the embedded broker does not understand {line!r}")
        fields.update(config or {})
        self.config = BrokerConfig(**fields)
        self._tls = tls
        self._require_certificate = require_certificate
        self._websockets = websockets
        self._websockets_tls = websockets_tls
        self._unix_socket = unix_socket
        self._persistence = persistence
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="trio-mqtt-embedded-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        self._ports: dict[str, int] = {}
        self._core: Broker | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_event: trio.Event | None = None
        self._abort = False
        self._error: BaseException | None = None
        self._closed = False
        self._ca: Any = None
        self._client_cert: Any = None
        self._server_context: ssl.SSLContext | None = None
        if tls or websockets_tls:
            self._make_certificates()

    # -- TLS material
    def _make_certificates(self) -> None:
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - trustme is a test dependency
            raise EmbeddedBrokerError("TLS listeners need trustme: pip install trustme") from exc
        self._ca = trustme.CA()
        server = self._ca.issue_cert(_LOCALHOST, "localhost")
        self._ca.cert_pem.write_to_path(str(self.ca_pem_path))
        self._client_cert = self._ca.issue_cert(
            "client.trio-mqtt.test", common_name="trio-mqtt-test-client"
        )
        self._client_cert.private_key_pem.write_to_path(str(self.client_key_path))
        with self.client_cert_path.open("wb") as file:
            for pem in self._client_cert.cert_chain_pems:
                file.write(pem.bytes())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.configure_cert(context)
        if self._require_certificate:
            context.verify_mode = ssl.CERT_REQUIRED
            self._ca.configure_trust(context)
        self._server_context = context

    # -- process control, MosquittoBroker style
    @property
    def running(self) -> bool:
        """Whether the broker's thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def core(self) -> Broker | None:
        """The sans-IO broker while it runs (or kept across restarts with persistence)."""
        return self._core

    def _listeners(self) -> list[Any]:
        from ..broker import Listener

        out = [Listener("tcp", _LOCALHOST, self._ports.get("mqtt", 0))]
        if self._tls:
            out.append(
                Listener("tls", _LOCALHOST, self._ports.get("tls", 0), None, self._server_context)
            )
        if self._websockets:
            out.append(Listener("ws", _LOCALHOST, self._ports.get("ws", 0), ws_path="/"))
        if self._websockets_tls:
            out.append(
                Listener(
                    "wss",
                    _LOCALHOST,
                    self._ports.get("wss", 0),
                    None,
                    self._server_context,
                    ws_path="/",
                )
            )
        if self._unix_socket:
            out.append(Listener("unix", path=str(self.unix_path)))
        return out

    def _make_core(self) -> Broker:
        if self._persistence and self._core is not None:
            return self._core
        return Broker(self.config)

    async def _main(self, started: threading.Event) -> None:
        from ..broker import open_mqtt_broker

        core = self._make_core()
        self._core = core
        self._token = trio.lowlevel.current_trio_token()
        stop = self._stop_event = trio.Event()
        kinds = ["mqtt"] + [
            k
            for k, on in (
                ("tls", self._tls),
                ("ws", self._websockets),
                ("wss", self._websockets_tls),
            )
            if on
        ]
        async with open_mqtt_broker(
            port=None, listeners=self._listeners(), core=core, shutdown_timeout=1.0
        ) as broker:
            self._broker = broker
            tcp_like = [b for b in broker.listeners if b.listener.kind != "unix"]
            for kind, bound in zip(kinds, tcp_like, strict=False):
                self._ports[kind] = bound.port
            started.set()
            await stop.wait()
            if self._abort:
                broker.abort()

    def _run(self, started: threading.Event) -> None:
        try:
            trio.run(self._main, started, clock=_MonotonicClock())
        except BaseException as exc:
            self._error = exc
            started.set()

    def start(self) -> None:
        """Start serving; returns once every listener accepts connections."""
        if self._closed:
            raise EmbeddedBrokerError("this broker was closed; create a new one")
        if self.running:
            raise EmbeddedBrokerError("the broker is already running")
        self._error = None
        self._abort = False
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="embedded-mqtt-broker", daemon=True
        )
        self._thread.start()
        if not started.wait(self._start_timeout) or self._error is not None:
            error = self._error
            self._thread = None
            raise EmbeddedBrokerError(f"the embedded broker did not start: {error!r}") from error

    def _shutdown(self, abort: bool) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._thread = None
            return
        self._abort = abort
        token, event = self._token, self._stop_event
        if token is not None and event is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(event.set, trio_token=token)
        thread.join(self._stop_timeout + 5)
        self._thread = None
        if not self._persistence:
            self._core = None

    def stop(self) -> None:
        """Stop: MQTT 5 clients get DISCONNECT (Server shutting down), then sockets close."""
        self._shutdown(abort=False)

    def kill(self) -> None:
        """Stop at once: every socket is closed without a DISCONNECT (like SIGKILL)."""
        self._shutdown(abort=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        port = self._ports.get("mqtt")
        return f"<EmbeddedBroker {state} port={port}>"

    def statistics(self) -> Any:
        """The broker's counters (:class:`~trio_mqtt.broker.BrokerStatistics`)."""
        if self._core is None:
            raise EmbeddedBrokerError("the broker is not running")
        return self._core.statistics()

    # -- addresses, MosquittoBroker style
    def _port(self, kind: str, option: str) -> int:
        if kind not in self._ports:
            if kind != "mqtt" and not getattr(self, f"_{option}"):
                raise EmbeddedBrokerError(f"this broker has no {kind} listener: pass {option}=True")
            raise EmbeddedBrokerError("the broker has not been started yet")
        return self._ports[kind]

    @property
    def directory(self) -> Path:
        """The broker's private directory (certificates, Unix socket)."""
        return self._dir

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return _LOCALHOST

    @property
    def port(self) -> int:
        """Port of the plain MQTT listener."""
        return self._port("mqtt", "mqtt")

    @property
    def log(self) -> str:
        """The embedded broker keeps no log file; its counters are in :meth:`statistics`."""
        return repr(self._core.statistics()) if self._core is not None else ""
