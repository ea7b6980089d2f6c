"""TLS transport: verification on by default, mutual TLS, typed certificate errors, ALPN.

Brokers are private mosquitto processes with trustme certificates; the ALPN check uses a small
Trio TLS server that records the protocol it negotiated.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization
from test_transports import LOCALHOST, MAX_PACKET, TIMEOUT, RawMqtt, connack_over

from trio_mqtt import InvalidOptionError, TransportError
from trio_mqtt._transports import (
    CertificateVerificationError,
    TlsConfigurationError,
    TlsError,
    TlsTransport,
)
from trio_mqtt.testing import MosquittoBroker


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[MosquittoBroker]:
    """A broker with a TLS listener whose certificate is for 127.0.0.1 and localhost."""
    with MosquittoBroker(tls=True, log_types=("error",)) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_broker() -> Iterator[MosquittoBroker]:
    """A broker whose TLS listener demands a client certificate (mutual TLS)."""
    with MosquittoBroker(tls=True, require_certificate=True, log_types=("error",)) as running:
        yield running


async def test_broker_certificate_verified_against_the_given_ca(
    tls_broker: MosquittoBroker,
) -> None:
    transport = TlsTransport(ca_file=tls_broker.ca_pem_path)
    with trio.fail_after(TIMEOUT):
        stream = await transport.open_stream(LOCALHOST, tls_broker.tls_port)
        assert isinstance(stream, trio.SSLStream)
        assert stream.getpeercert()["subjectAltName"] == (  # type: ignore[index]
            ("IP Address", LOCALHOST),
            ("DNS", "localhost"),
        )
        await connack_over(stream)


async def test_ca_given_as_data_and_host_name_checked(tls_broker: MosquittoBroker) -> None:
    pem = tls_broker.ca.cert_pem.bytes().decode()
    with trio.fail_after(TIMEOUT):
        stream = await TlsTransport(ca_data=pem).open_stream("localhost", tls_broker.tls_port)
        await connack_over(stream)


async def test_user_ssl_context_is_used(tls_broker: MosquittoBroker) -> None:
    transport = TlsTransport(ssl_context=tls_broker.client_ssl_context())
    with trio.fail_after(TIMEOUT):
        await connack_over(await transport.open_stream(LOCALHOST, tls_broker.tls_port))


async def test_untrusted_server_certificate_is_refused(tls_broker: MosquittoBroker) -> None:
    other_ca = trustme.CA()
    transport = TlsTransport(ca_data=other_ca.cert_pem.bytes().decode())
    with trio.fail_after(TIMEOUT), pytest.raises(CertificateVerificationError) as caught:
        await transport.open_stream(LOCALHOST, tls_broker.tls_port)
    assert caught.value.verify_code == 19  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    assert "self-signed certificate in certificate chain" in str(caught.value)
    assert isinstance(caught.value, TlsError)
    assert isinstance(caught.value, TransportError)


async def test_system_store_does_not_trust_a_private_ca(tls_broker: MosquittoBroker) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(CertificateVerificationError):
        await TlsTransport().open_stream(LOCALHOST, tls_broker.tls_port)


async def test_hostname_mismatch_is_refused(tls_broker: MosquittoBroker) -> None:
    transport = TlsTransport(ca_file=tls_broker.ca_pem_path, server_hostname="broker.example")
    with trio.fail_after(TIMEOUT), pytest.raises(CertificateVerificationError) as caught:
        await transport.open_stream(LOCALHOST, tls_broker.tls_port)
    assert "Hostname mismatch" in caught.value.verify_message
    assert "broker.example" in str(caught.value)


async def test_server_hostname_override_is_checked_instead_of_the_host(
    tls_broker: MosquittoBroker,
) -> None:
    # Connect by IP but verify (and send SNI) as "localhost", a name the certificate holds.
    transport = TlsTransport(ca_file=tls_broker.ca_pem_path, server_hostname="localhost")
    with trio.fail_after(TIMEOUT):
        await connack_over(await transport.open_stream(LOCALHOST, tls_broker.tls_port))


async def test_dangerous_switches_really_turn_checks_off(tls_broker: MosquittoBroker) -> None:
    skip_name = TlsTransport(
        ca_file=tls_broker.ca_pem_path,
        server_hostname="broker.example",
        dangerously_skip_hostname_check=True,
    )
    untrusted = TlsTransport(dangerously_disable_verification=True)
    with trio.fail_after(TIMEOUT):
        await connack_over(await skip_name.open_stream(LOCALHOST, tls_broker.tls_port))
        await connack_over(await untrusted.open_stream(LOCALHOST, tls_broker.tls_port))
    # ... but skipping the host name alone still checks the chain.
    other = TlsTransport(
        ca_data=trustme.CA().cert_pem.bytes().decode(), dangerously_skip_hostname_check=True
    )
    with trio.fail_after(TIMEOUT), pytest.raises(CertificateVerificationError):
        await other.open_stream(LOCALHOST, tls_broker.tls_port)


async def test_mutual_tls_accepted_with_the_client_certificate(
    mtls_broker: MosquittoBroker,
) -> None:
    transport = TlsTransport(
        ca_file=mtls_broker.ca_pem_path,
        cert_file=mtls_broker.client_cert_path,
        key_file=mtls_broker.client_key_path,
    )
    with trio.fail_after(TIMEOUT):
        await connack_over(await transport.open_stream(LOCALHOST, mtls_broker.tls_port))


async def test_mutual_tls_refused_without_a_client_certificate(
    mtls_broker: MosquittoBroker,
) -> None:
    # Under TLS 1.3 the server judges our (missing) certificate after the handshake finished on
    # our side, so the refusal shows on the first exchange: the broker drops the connection.
    transport = TlsTransport(ca_file=mtls_broker.ca_pem_path)
    with trio.fail_after(TIMEOUT):
        stream = await transport.open_stream(LOCALHOST, mtls_broker.tls_port)
        with pytest.raises((trio.BrokenResourceError, EOFError)):
            await RawMqtt(stream).connect("no-cert")
        await stream.aclose()


def _encrypted_key(broker: MosquittoBroker, folder: Path, password: bytes) -> Path:
    key = serialization.load_pem_private_key(broker.client_key_path.read_bytes(), None)
    path = folder / "encrypted-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )
    return path


async def test_encrypted_client_key_with_its_password(
    mtls_broker: MosquittoBroker, tmp_path: Path
) -> None:
    key = _encrypted_key(mtls_broker, tmp_path, b"s3cret")
    good = TlsTransport(
        ca_file=mtls_broker.ca_pem_path,
        cert_file=mtls_broker.client_cert_path,
        key_file=key,
        key_password="s3cret",
    )
    with trio.fail_after(TIMEOUT):
        await connack_over(await good.open_stream(LOCALHOST, mtls_broker.tls_port))
    wrong = TlsTransport(
        ca_file=mtls_broker.ca_pem_path,
        cert_file=mtls_broker.client_cert_path,
        key_file=key,
        key_password="wrong",
    )
    with trio.fail_after(TIMEOUT), pytest.raises(TlsConfigurationError, match="wrong key_password"):
        await wrong.open_stream(LOCALHOST, mtls_broker.tls_port)
    # Without a password OpenSSL would prompt on the terminal; we refuse instead.
    silent = TlsTransport(cert_file=mtls_broker.client_cert_path, key_file=key)
    with trio.fail_after(TIMEOUT), pytest.raises(TlsConfigurationError, match="give key_password"):
        await silent.open_stream(LOCALHOST, mtls_broker.tls_port)


async def test_configuration_errors_name_the_file_and_cause(
    mtls_broker: MosquittoBroker, tmp_path: Path
) -> None:
    missing = TlsTransport(ca_file=tmp_path / "missing-ca.pem")
    with (
        trio.fail_after(TIMEOUT),
        pytest.raises(TlsConfigurationError, match=r"missing-ca\.pem' not found"),
    ):
        await missing.open_stream(LOCALHOST, mtls_broker.tls_port)
    stranger = trustme.CA().issue_cert("someone.else")
    other_key = tmp_path / "other-key.pem"
    stranger.private_key_pem.write_to_path(str(other_key))
    mismatch = TlsTransport(cert_file=mtls_broker.client_cert_path, key_file=other_key)
    with trio.fail_after(TIMEOUT), pytest.raises(TlsConfigurationError, match="does not match"):
        await mismatch.open_stream(LOCALHOST, mtls_broker.tls_port)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with (
        trio.fail_after(TIMEOUT),
        pytest.raises(TlsConfigurationError, match=r"garbage\.pem.*not a valid PEM"),
    ):
        await TlsTransport(ca_file=garbage).open_stream(LOCALHOST, mtls_broker.tls_port)


async def test_certificates_are_loaded_in_a_worker_thread(tls_broker: MosquittoBroker) -> None:
    threads: list[threading.Thread] = []

    class Recording(TlsTransport):
        def build_context(self) -> ssl.SSLContext:
            threads.append(threading.current_thread())
            return TlsTransport.build_context(self)

    transport = Recording(ca_file=tls_broker.ca_pem_path)
    with trio.fail_after(TIMEOUT):
        await connack_over(await transport.open_stream(LOCALHOST, tls_broker.tls_port))
    assert threads
    assert threads[0] is not threading.main_thread()


async def test_alpn_protocols_are_offered() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOCALHOST).configure_cert(server_context)
    server_context.set_alpn_protocols(["mqtt", "x-amzn-mqtt-ca"])
    negotiated: list[str | None] = []
    handled = trio.Event()

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            negotiated.append(stream.selected_alpn_protocol())
            await stream.aclose()
        except trio.BrokenResourceError:
            negotiated.append("broken")
        finally:
            handled.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_ssl_over_tcp, handler, 0, server_context)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        transport = TlsTransport(
            ca_data=ca.cert_pem.bytes().decode(), alpn_protocols=("x-amzn-mqtt-ca",)
        )
        with trio.fail_after(TIMEOUT):
            stream = await transport.open_stream(LOCALHOST, port, max_packet_size=MAX_PACKET)
            assert isinstance(stream, trio.SSLStream)
            assert stream.selected_alpn_protocol() == "x-amzn-mqtt-ca"
            await handled.wait()
            await stream.aclose()
        nursery.cancel_scope.cancel()
    assert negotiated == ["x-amzn-mqtt-ca"]


def test_ssl_context_excludes_the_simple_options() -> None:
    context = ssl.create_default_context()
    with pytest.raises(InvalidOptionError, match="alpn_protocols"):
        TlsTransport(ssl_context=context, alpn_protocols=("mqtt",))
    with pytest.raises(InvalidOptionError, match="dangerously_disable_verification"):
        TlsTransport(ssl_context=context, dangerously_disable_verification=True)
    built = TlsTransport(ssl_context=context).build_context()
    assert built is context
    default = TlsTransport().build_context()
    assert default.verify_mode == ssl.CERT_REQUIRED
    assert default.check_hostname


async def test_context_is_reused_until_a_file_changes(
    tls_broker: MosquittoBroker, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls_broker.ca_pem_path.read_bytes())
    builds: list[ssl.SSLContext] = []

    class Counting(TlsTransport):
        def build_context(self) -> ssl.SSLContext:
            builds.append(TlsTransport.build_context(self))
            return builds[-1]

    transport = Counting(ca_file=ca)
    with trio.fail_after(TIMEOUT):
        for _ in range(3):
            await connack_over(await transport.open_stream(LOCALHOST, tls_broker.tls_port))
        assert len(builds) == 1  # loading CAs can take tens of ms: done once
        stat = ca.stat()
        os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))  # "rotated"
        await connack_over(await transport.open_stream(LOCALHOST, tls_broker.tls_port))
        assert len(builds) == 2
        ca.unlink()  # a vanished file is reported, not papered over by the cache
        with pytest.raises(TlsConfigurationError, match="not found"):
            await transport.open_stream(LOCALHOST, tls_broker.tls_port)
