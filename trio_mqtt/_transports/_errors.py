"""Typed transport failures, and the one place where trio/ssl/OS errors become them.

Every class here derives from :class:`~trio_mqtt.TransportError`, itself a
:class:`~trio_mqtt.ConnectionLost`, so code that handles "the network went away" keeps working
whatever the transport. The subclasses say *why* in a way a program can test: a certificate the
client refused, a TLS set-up that could not be loaded, a WebSocket upgrade or an HTTP proxy that
said no.
"""

from __future__ import annotations

import ssl
import sys

import trio

from .._core._errors import TransportError

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "CertificateVerificationError",
    "ProxyError",
    "TlsConfigurationError",
    "TlsError",
    "WebSocketError",
    "connect_failure",
    "translate_stream_error",
]


class TlsError(TransportError):
    """The TLS handshake or the TLS session failed.

    Raised as is when the failure is not about our view of the server certificate, for example
    when the broker refused our client certificate or no protocol version was shared.
    """


class CertificateVerificationError(TlsError):
    """We refused the server's certificate: untrusted issuer, expired, or wrong host name.

    Attributes:
        verify_code: OpenSSL's verification result code (``0`` when the host name was the
            problem).
        verify_message: OpenSSL's description, such as ``"Hostname mismatch, certificate is not
            valid for 'example.com'."`` or ``"self-signed certificate in certificate chain"``.
    """

    def __init__(self, message: str, *, verify_code: int, verify_message: str) -> None:
        super().__init__(message)
        self.verify_code = verify_code
        self.verify_message = verify_message


class TlsConfigurationError(TlsError):
    """The CA bundle, client certificate or private key could not be loaded.

    Retrying cannot help until the files or options are fixed. The message names the file or
    option and the cause (missing file, wrong key password, key that does not match the
    certificate, unparsable PEM).
    """


class WebSocketError(TransportError):
    """The WebSocket upgrade was refused or the WebSocket layer failed.

    Attributes:
        status_code: the HTTP status of a refused upgrade, or ``None``.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ProxyError(TransportError):
    """The proxy (HTTP or SOCKS5) could not be reached or refused the tunnel to the broker.

    Attributes:
        status_code: an HTTP proxy's status (``407`` means proxy authentication is required
            or was wrong), or ``None``.
        socks_reply: a SOCKS5 proxy's reply code (RFC 1928: ``2`` not allowed, ``4`` host
            unreachable, ``5`` connection refused, ...), or ``None``.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, socks_reply: int | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.socks_reply = socks_reply


def _ssl_reason(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _os_errors(exc: BaseException) -> list[OSError]:
    """The OS errors behind ``exc``: the attempts of the group it was raised from, or itself.

    ``trio.open_tcp_stream`` raises one ``OSError("all attempts to connect ... failed")`` whose
    cause is an exception group holding one error per address tried.
    """
    cause = exc.__cause__
    if not isinstance(cause, BaseExceptionGroup):
        return [exc] if isinstance(exc, OSError) else []
    leaves: list[OSError] = []
    pending: list[BaseException] = [cause]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        elif isinstance(current, OSError):
            leaves.append(current)
    return leaves


def connect_failure(exc: OSError, host: str, port: int) -> TransportError:
    """The error for a TCP connection that could not be opened, saying why in its message.

    "connection refused" when every address refused (nothing listens on that port), else
    the distinct reasons of the attempts (timed out, no route to host, ...).
    """
    errors = _os_errors(exc)
    if errors and all(isinstance(e, ConnectionRefusedError) for e in errors):
        return TransportError(
            f"cannot connect to {host}:{port}: connection refused (nothing listens on that "
            "port: is the broker running, and is this its port?)"
        )
    reasons: list[str] = []
    for error in errors:
        text = error.strerror or str(error)
        if text not in reasons:
            reasons.append(text.lower() if error.strerror else text)
    detail = "; ".join(reasons) or str(exc)
    return TransportError(f"cannot connect to {host}:{port}: {detail}")


def translate_stream_error(exc: BaseException, where: str) -> TransportError:
    """Turn an error raised by a Trio stream (or the OS below it) into a :class:`TransportError`.

    This is the single seam where trio, ssl and OS exceptions become trio-mqtt exceptions; the
    event loop can call it for failures of an open stream too (a broker that rejects our client
    certificate under TLS 1.3 says so only on the first read after the handshake).

    Args:
        exc: the exception caught from a stream operation.
        where: a short description of the peer or the step, used in the message
            (``"TLS handshake with broker.example:8883"``).

    Returns:
        The most specific :class:`TransportError` subclass; the caller raises it ``from exc``.
    """
    if isinstance(exc, TransportError):
        return exc
    reason = _ssl_reason(exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        code = reason.verify_code
        message = reason.verify_message or str(reason)
        return CertificateVerificationError(
            f"{where}: server certificate rejected: {message}",
            verify_code=code,
            verify_message=message,
        )
    if reason is not None:
        detail = reason.reason or str(reason)
        return TlsError(f"{where}: TLS failure: {detail.replace('_', ' ').lower()} ({reason})")
    if isinstance(exc, trio.ClosedResourceError):
        return TransportError(f"{where}: stream already closed")
    if isinstance(exc, trio.BrokenResourceError):
        cause = exc.__cause__
        detail = f": {cause}" if cause is not None else ""
        return TransportError(f"{where}: connection broken{detail}")
    return TransportError(f"{where}: {exc}")
