"""TLS transport on the standard library's ``ssl`` module and ``trio.SSLStream``.

Theory of operation: the options describe an ``ssl.SSLContext``; building it reads files (CA
bundle, certificate chain, key) and may run a key-derivation for an encrypted key, so it happens
in a worker thread, never on the event loop. Loading the system's CA store alone takes tens of
milliseconds, so the context is kept and shared by later connections for as long as the files it
came from are unchanged (same size and modification time); a rotated certificate is picked up by
the next reconnect. The handshake runs eagerly inside :meth:`open_stream` so that
a certificate problem surfaces there as a typed error rather than on the first read. Verification
and host name checking are on unless an option whose name starts with ``dangerously_`` says
otherwise.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .._core._errors import InvalidOptionError, TransportError
from ._errors import (
    CertificateVerificationError,
    TlsConfigurationError,
    TlsError,
    translate_stream_error,
)
from ._tcp import TcpTransport

__all__ = ["TlsTransport"]


class _NoKeyPassword(Exception):
    """Raised instead of letting OpenSSL prompt on the terminal for a key password."""


def _describe_load_error(what: str, path: str | None, exc: BaseException) -> str:
    target = f"{what} {path!r}" if path else what
    if isinstance(exc, FileNotFoundError):
        return f"{target} not found"
    if isinstance(exc, PermissionError):
        return f"{target} is not readable (permission denied)"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if "KEY_VALUES_MISMATCH" in reason:
            return f"{target}: the private key does not match the certificate ({exc})"
        return f"{target}: not a valid PEM certificate/key ({exc})"
    return f"{target}: {exc}"


def _not_tls_hint(error: TransportError) -> TransportError:
    """Add "is this a TLS port?" to a handshake that failed without a certificate problem.

    A plain MQTT listener answers a TLS ClientHello by closing the connection (mosquitto reads
    it as a malformed CONNECT) or with bytes that are no TLS record ("wrong version number").
    """
    if isinstance(error, CertificateVerificationError | TlsConfigurationError):
        return error
    text = str(error)
    if type(error) is TransportError or "wrong version number" in text.lower():
        return TlsError(
            f"{text} (is this a TLS port? The broker did not answer the TLS handshake; "
            "a plain MQTT port needs mqtt:// or no TLS options)"
        )
    return error


def _key_is_encrypted(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            return b"ENCRYPTED" in file.read(1 << 20)
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class TlsTransport:
    """MQTT over TLS (``mqtts``), by default on port 8883.

    Either give a ready ``ssl_context`` (used exactly as it is), or let the simple options
    describe one. With no options at all, the system's trusted CAs verify the broker.

    Attributes:
        ssl_context: a complete client context; excludes every option below except
            ``server_hostname`` and ``tcp``.
        ca_file: PEM file of the CAs that may sign the broker's certificate (replaces the
            system store).
        ca_data: the same as PEM text (or DER bytes), for certificates kept in memory.
        ca_path: a directory of CA certificates named by subject hash (``c_rehash``), like
            OpenSSL's ``-CApath``; with ``ca_file``/``ca_data`` it adds to them.
        system_cas: also trust the system's CAs when ``ca_file``, ``ca_data`` or ``ca_path``
            is given (without any of them the system's CAs are used anyway).
        minimum_version: the oldest TLS version to accept, e.g. ``ssl.TLSVersion.TLSv1_3``
            (``None``: the ``ssl`` module's default, TLS 1.2 on current systems).
        cert_file: PEM file of our client certificate chain, for mutual TLS.
        key_file: PEM file of its private key (``None`` if it is inside ``cert_file``).
        key_password: password of an encrypted private key.
        alpn_protocols: protocols to offer with ALPN, e.g. ``("x-amzn-mqtt-ca",)`` to reach
            AWS IoT on port 443.
        server_hostname: name to check the certificate against and send as SNI, when it
            differs from the host we connect to (e.g. connecting by IP address).
        dangerously_disable_verification: accept any certificate from anyone. This removes
            the protection TLS exists for; use it only against a throw-away test broker.
        dangerously_skip_hostname_check: verify the certificate chain but accept it for any
            host name.
        tcp: TCP options of the underlying connection.
    """

    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    ca_file: str | Path | None = None
    ca_data: str | bytes | None = None
    ca_path: str | Path | None = None
    system_cas: bool = False
    minimum_version: ssl.TLSVersion | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    key_password: str | bytes | None = field(default=None, repr=False)
    alpn_protocols: Sequence[str] = ()
    server_hostname: str | None = None
    dangerously_disable_verification: bool = False
    dangerously_skip_hostname_check: bool = False
    tcp: TcpTransport = field(default_factory=TcpTransport)
    _cache: list[tuple[tuple[tuple[str, int, int], ...], ssl.SSLContext]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.alpn_protocols, str):
            raise InvalidOptionError("alpn_protocols is a sequence of names, e.g. ('mqtt',)")
        object.__setattr__(self, "alpn_protocols", tuple(self.alpn_protocols))
        for protocol in self.alpn_protocols:
            if not isinstance(protocol, str) or not 0 < len(protocol.encode()) < 256:
                raise InvalidOptionError(f"invalid ALPN protocol name {protocol!r}")
        if self.ssl_context is not None:
            simple = {
                "ca_file": self.ca_file,
                "ca_data": self.ca_data,
                "ca_path": self.ca_path,
                "system_cas": self.system_cas or None,
                "minimum_version": self.minimum_version,
                "cert_file": self.cert_file,
                "key_file": self.key_file,
                "key_password": self.key_password,
                "alpn_protocols": self.alpn_protocols or None,
                "dangerously_disable_verification": self.dangerously_disable_verification or None,
                "dangerously_skip_hostname_check": self.dangerously_skip_hostname_check or None,
            }
            used = [name for name, value in simple.items() if value is not None]
            if used:
                raise InvalidOptionError(
                    f"ssl_context excludes {', '.join(used)}: configure the context instead"
                )
            if not isinstance(self.ssl_context, ssl.SSLContext):
                raise InvalidOptionError("ssl_context must be an ssl.SSLContext")
        if self.key_file is not None and self.cert_file is None:
            raise InvalidOptionError("key_file needs cert_file")
        if self.key_password is not None and self.cert_file is None:
            raise InvalidOptionError("key_password needs cert_file")

    def _file_signature(self) -> tuple[tuple[str, int, int], ...] | None:
        """Size and modification time of every file the context is built from (blocking).

        ``None`` when a file cannot be examined: then nothing is cached and building the
        context reports the problem.
        """
        signature = []
        for path in (self.ca_file, self.ca_path, self.cert_file, self.key_file):
            if path is None:
                continue
            try:
                status = os.stat(path)
            except OSError:
                return None
            signature.append((os.fspath(path), status.st_mtime_ns, status.st_size))
        return tuple(signature)

    def context(self) -> ssl.SSLContext:
        """The context for a new connection: cached, or built again if a file changed.

        Blocking like :meth:`build_context`; :meth:`open_stream` calls it in a worker thread.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        signature = self._file_signature()
        cached = self._cache
        if signature is not None and cached and cached[0][0] == signature:
            return cached[0][1]
        context = self.build_context()
        if signature is not None:
            cached[:] = [(signature, context)]
        return context

    def build_context(self) -> ssl.SSLContext:
        """Build the ``ssl.SSLContext`` these options describe (blocking: reads files).

        :meth:`open_stream` calls this in a worker thread; call it yourself only off the event
        loop (for example with ``trio.to_thread.run_sync``).

        Raises:
            TlsConfigurationError: a file is missing or unreadable, a PEM is malformed, the key
                password is wrong or the key does not match the certificate.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        # Given CAs replace the system store (unless system_cas adds it back); without them
        # the system's CAs are loaded.
        if self.ca_path is not None and not os.path.isdir(self.ca_path):
            raise TlsConfigurationError(f"CA directory {os.fspath(self.ca_path)!r} not found")
        try:
            context = ssl.create_default_context(
                cafile=self.ca_file, capath=self.ca_path, cadata=self.ca_data
            )
        except (OSError, ValueError) as exc:
            what = "CA file" if self.ca_file is not None else "ca_data"
            path = os.fspath(self.ca_file) if self.ca_file is not None else None
            raise TlsConfigurationError(_describe_load_error(what, path, exc)) from exc
        given = (self.ca_file, self.ca_data, self.ca_path)
        if self.system_cas and any(item is not None for item in given):
            context.load_default_certs()
        if self.minimum_version is not None:
            context.minimum_version = self.minimum_version
        if self.cert_file is not None:
            self._load_client_certificate(context, os.fspath(self.cert_file))
        if self.alpn_protocols:
            context.set_alpn_protocols(list(self.alpn_protocols))
        if self.dangerously_disable_verification:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.dangerously_skip_hostname_check:
            context.check_hostname = False
        return context

    def _load_client_certificate(self, context: ssl.SSLContext, cert_file: str) -> None:
        key_file = os.fspath(self.key_file) if self.key_file is not None else cert_file
        given = self.key_password

        def password() -> str | bytes:
            # A callable, so that OpenSSL never prompts on a terminal for a missing password.
            if given is None:
                raise _NoKeyPassword
            return given

        try:
            context.load_cert_chain(cert_file, self.key_file, password)
        except _NoKeyPassword:
            raise TlsConfigurationError(
                f"private key {key_file!r} is encrypted: give key_password"
            ) from None
        except (OSError, ValueError) as exc:
            if given is not None and _key_is_encrypted(key_file):
                message = f"private key {key_file!r}: wrong key_password (cannot decrypt it)"
            else:
                message = _describe_load_error("client certificate/key", cert_file, exc)
            raise TlsConfigurationError(message) from exc

    async def open_stream(
        self, host: str, port: int, *, max_packet_size: int = 0
    ) -> trio.abc.Stream:
        """Connect over TCP and complete the TLS handshake.

        Raises:
            TlsConfigurationError: the certificates or key could not be loaded.
            CertificateVerificationError: we refused the broker's certificate (untrusted,
                expired, host name mismatch).
            TlsError: any other handshake failure (e.g. the broker refused our certificate).
            TransportError: the TCP connection failed.
        """
        context = await trio.to_thread.run_sync(self.context)
        tcp = await self.tcp.open_stream(host, port, max_packet_size=max_packet_size)
        return await self._handshake(tcp, context, host, port)

    async def wrap_stream(
        self, stream: trio.abc.Stream, host: str, port: int, *, max_packet_size: int
    ) -> trio.abc.Stream:
        """Run TLS over an already open stream (an HTTP proxy tunnel, for instance)."""
        try:
            context = await trio.to_thread.run_sync(self.context)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return await self._handshake(stream, context, host, port)

    async def _handshake(
        self, stream: trio.abc.Stream, context: ssl.SSLContext, host: str, port: int
    ) -> trio.SSLStream[trio.abc.Stream]:
        hostname = self.server_hostname or host
        tls = trio.SSLStream(stream, context, server_hostname=hostname)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, OSError) as exc:
            await trio.aclose_forcefully(stream)
            error = translate_stream_error(exc, f"TLS handshake with {hostname}:{port}")
            raise _not_tls_hint(error) from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return tls
