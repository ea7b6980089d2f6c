"""What both test brokers offer alike: their life cycle, their listeners' URLs, their TLS material.

:class:`~trio_mqtt.testing.MosquittoBroker` and :class:`~trio_mqtt.testing.EmbeddedBroker`
each keep ``_ports`` (listener kind -> port), ``_dir`` (their private folder, where the
certificates are written), ``_ca`` and ``_client_cert`` (trustme objects, or None without
TLS), ``_unix_socket`` and ``_require_certificate``, and say how a missing listener is
reported (``_port``) and which error class they raise (``_error_type``). They implement
``start()`` and ``stop()``, keep ``_closed`` and a ``_finalizer`` that deletes their files.
"""

from __future__ import annotations

import ssl
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

__all__ = ["BrokerEndpoints"]

LOCALHOST = "127.0.0.1"
_Self = TypeVar("_Self", bound="BrokerEndpoints")


class BrokerEndpoints:
    """Life cycle, URLs and TLS material of a private test broker (base of both)."""

    _error_type: ClassVar[type[Exception]] = RuntimeError
    _ports: dict[str, int]
    _dir: Path
    _ca: Any
    _client_cert: Any
    _unix_socket: bool
    _require_certificate: bool
    _closed: bool
    _finalizer: weakref.finalize[Any, Any]

    def _port(self, kind: str, option: str) -> int:
        raise NotImplementedError

    def start(self) -> None:
        """Start the broker (implemented by each broker)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the broker, keeping its files (implemented by each broker)."""
        raise NotImplementedError

    def restart(self) -> None:
        """Stop (if running) and start again on the same ports with the same files."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and delete its files; it cannot be started again."""
        self.stop()
        self._closed = True
        self._finalizer()

    def __enter__(self: _Self) -> _Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{LOCALHOST}:{self.port}"

    @property
    def port(self) -> int:
        """Port of the plain MQTT listener."""
        return self._port("mqtt", "mqtt")

    @property
    def tls_port(self) -> int:
        """Port of the MQTT-over-TLS listener (``tls=True``)."""
        return self._port("tls", "tls")

    @property
    def tls_url(self) -> str:
        """``mqtts://127.0.0.1:PORT``."""
        return f"mqtts://{LOCALHOST}:{self.tls_port}"

    @property
    def ws_port(self) -> int:
        """Port of the WebSocket listener (``websockets=True``)."""
        return self._port("ws", "websockets")

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        return f"ws://{LOCALHOST}:{self.ws_port}/"

    @property
    def wss_port(self) -> int:
        """Port of the secure WebSocket listener (``websockets_tls=True``)."""
        return self._port("wss", "websockets_tls")

    @property
    def wss_url(self) -> str:
        """``wss://127.0.0.1:PORT/``."""
        return f"wss://{LOCALHOST}:{self.wss_port}/"

    @property
    def unix_path(self) -> Path:
        """Path of the Unix domain socket listener (``unix_socket=True``)."""
        if not self._unix_socket:
            raise self._error_type("this broker has no unix listener: pass unix_socket=True")
        return self._dir / "mqtt.sock"

    @property
    def unix_url(self) -> str:
        """``unix:///path/to/mqtt.sock``."""
        return f"unix://{self.unix_path}"

    def _need_tls(self) -> None:
        if self._ca is None:
            raise self._error_type("this broker has no TLS material: pass tls or websockets_tls")

    @property
    def ca(self) -> Any:
        """The :class:`trustme.CA` that signed the broker's and the client's certificates."""
        self._need_tls()
        return self._ca

    @property
    def ca_pem_path(self) -> Path:
        """PEM file of the CA certificate, for a client's trust store."""
        return self._dir / "ca.pem"

    @property
    def client_cert(self) -> Any:
        """A :class:`trustme.LeafCert` the broker accepts as a client certificate."""
        self._need_tls()
        return self._client_cert

    @property
    def client_cert_path(self) -> Path:
        """PEM file of the client certificate chain."""
        return self._dir / "client-cert.pem"

    @property
    def client_key_path(self) -> Path:
        """PEM file of the client certificate's private key."""
        return self._dir / "client-key.pem"

    def client_ssl_context(self, *, client_certificate: bool | None = None) -> ssl.SSLContext:
        """An SSL context that trusts the broker's CA.

        Args:
            client_certificate: load the client certificate; by default only when the broker
                was made with ``require_certificate=True``.
        """
        self._need_tls()
        context = ssl.create_default_context(cafile=str(self.ca_pem_path))
        if self._require_certificate if client_certificate is None else client_certificate:
            context.load_cert_chain(str(self.client_cert_path), str(self.client_key_path))
        return context
