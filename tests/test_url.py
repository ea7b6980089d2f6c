"""Connection URLs: accepted forms, defaults per scheme, percent-decoding, and rejected forms."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings, strategies as st

from trio_mqtt import InvalidOptionError, MqttOptions, ProtocolVersion
from trio_mqtt._transports import (
    HttpProxy,
    Socks5Proxy,
    TcpTransport,
    TlsTransport,
    UnixSocketTransport,
    WebSocketTransport,
)
from trio_mqtt._url import QUERY_KEYS, proxy_from_url, url_fields

options_from_url = MqttOptions.from_url


def test_the_example_from_the_issue() -> None:
    options = options_from_url("mqtts://user:pass@host:8883/?client_id=x&keep_alive_secs=5")
    assert (options.host, options.port, options.client_id) == ("host", 8883, "x")
    assert options.keep_alive == 5
    assert options.username == "user"
    assert options.password == b"pass"
    assert isinstance(options.transport, TlsTransport)
    assert options.transport.ca_file is None  # the system's CAs verify the broker


@pytest.mark.parametrize(
    ("url", "transport_type", "port"),
    [
        ("mqtt://broker", TcpTransport, 1883),
        ("tcp://broker", TcpTransport, 1883),
        ("mqtt://broker/", TcpTransport, 1883),
        ("MQTT://broker", TcpTransport, 1883),
        ("mqtts://broker", TlsTransport, 8883),
        ("ssl://broker", TlsTransport, 8883),
        ("ws://broker", WebSocketTransport, 80),
        ("wss://broker", WebSocketTransport, 443),
        ("mqtt://broker:1884", TcpTransport, 1884),
        ("wss://broker:8084/mqtt", WebSocketTransport, 8084),
    ],
)
def test_schemes_pick_transport_and_default_port(url: str, transport_type: type, port: int) -> None:
    options = options_from_url(url)
    assert type(options.transport) is transport_type
    assert options.host == "broker"
    assert options.port == port
    assert options.client_id == ""  # the broker assigns one
    assert options.username is None
    assert options.password is None


def test_websocket_path_is_kept_and_wss_uses_tls() -> None:
    ws = options_from_url("ws://broker:9001/mqtt/a%20b?client_id=c").transport
    assert isinstance(ws, WebSocketTransport)
    assert ws.path == "/mqtt/a%20b"  # sent on the wire as written
    assert ws.tls is None
    assert isinstance(options_from_url("ws://broker").transport, WebSocketTransport)
    assert options_from_url("ws://broker").transport.path == "/"  # type: ignore[attr-defined]
    wss = options_from_url("wss://broker/mqtt?ca_file=/etc/ca.pem&alpn=mqtt").transport
    assert isinstance(wss, WebSocketTransport)
    assert isinstance(wss.tls, TlsTransport)
    assert wss.tls.ca_file == "/etc/ca.pem"
    assert wss.tls.alpn_protocols == ("mqtt",)


def test_unix_socket_path_is_percent_decoded() -> None:
    options = options_from_url("unix:///run/mosquitto/my%20broker.sock?client_id=u")
    assert isinstance(options.transport, UnixSocketTransport)
    assert options.transport.path == "/run/mosquitto/my broker.sock"
    assert options.client_id == "u"
    assert isinstance(options_from_url("unix://localhost/tmp/s").transport, UnixSocketTransport)


def test_every_rumqttc_query_key() -> None:
    options = options_from_url(
        "mqtt://h/?client_id=c&keep_alive_secs=7&clean_session=false&inflight_num=20"
        "&max_incoming_packet_size_bytes=2048&max_outgoing_packet_size_bytes=4096"
        "&conn_timeout_secs=2.5&request_channel_capacity_num=33&protocol_version=5"
        "&ping_timeout_secs=3&manual_acks=true&session_expiry_interval_secs=60"
        "&receive_maximum=10&topic_alias_maximum=5"
    )
    assert options.client_id == "c"
    assert options.keep_alive == 7
    assert options.clean_start is False
    assert options.inflight == 20
    assert options.max_incoming_packet_size == 2048
    assert options.max_outgoing_packet_size == 4096
    assert options.connect_timeout == 2.5
    assert options.request_capacity == 33
    assert options.protocol_version is ProtocolVersion.V5
    assert options.ping_timeout == 3.0
    assert options.manual_acks is True
    assert options.session_expiry_interval == 60
    assert options.receive_maximum == 10
    assert options.topic_alias_maximum == 5


@pytest.mark.parametrize(
    ("value", "version"),
    [("3.1.1", ProtocolVersion.V311), ("4", ProtocolVersion.V311), ("5", ProtocolVersion.V5)],
)
def test_protocol_versions(value: str, version: ProtocolVersion) -> None:
    assert options_from_url(f"mqtt://h?protocol_version={value}").protocol_version is version


def test_clean_start_spelling_and_booleans() -> None:
    assert options_from_url("mqtt://h?client_id=c&clean_start=0").clean_start is False
    assert options_from_url("mqtt://h?clean_session=TRUE").clean_start is True
    assert options_from_url("mqtt://h?clean_session=yes").clean_start is True


def test_percent_decoding_of_credentials_and_query() -> None:
    options = options_from_url(
        "mqtt://us%40er%3Aname:p%3Ass%2Fw%C3%B6rd@h?client_id=caf%C3%A9+1%26x"
    )
    assert options.username == "us@er:name"
    assert options.password == "p:ss/wörd".encode()
    assert options.client_id == "café+1&x"  # '+' is a plus sign, not a space


def test_user_without_password_and_ipv6_host() -> None:
    options = options_from_url("mqtt://alice@[::1]:1884")
    assert (options.username, options.password) == ("alice", None)
    assert (options.host, options.port) == ("::1", 1884)


def test_tls_query_keys() -> None:
    transport = options_from_url(
        "mqtts://h?ca_file=ca.pem&cert_file=c.pem&key_file=k.pem&alpn=x-amzn-mqtt-ca,mqtt"
        "&server_name=broker.example"
    ).transport
    assert isinstance(transport, TlsTransport)
    assert (transport.ca_file, transport.cert_file, transport.key_file) == (
        "ca.pem",
        "c.pem",
        "k.pem",
    )
    assert transport.alpn_protocols == ("x-amzn-mqtt-ca", "mqtt")
    assert transport.server_hostname == "broker.example"


def test_overrides_win_over_the_url() -> None:
    custom = TlsTransport(server_hostname="x")
    options = options_from_url("mqtt://h?keep_alive_secs=5", keep_alive=9, transport=custom)
    assert options.keep_alive == 9
    assert options.transport is custom
    with pytest.raises(InvalidOptionError, match="'keepalive'"):
        options_from_url("mqtt://h", keepalive=9)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "unknown URL scheme 'http'"),
        ("h:1883", "unknown URL scheme 'h'"),
        ("mqtt://h?color=red", "unknown query key 'color'"),
        ("mqtt://h?keep_alive_secs", "'keep_alive_secs' has no value"),
        ("mqtt://h?keep_alive_secs=five", "'keep_alive_secs': expected a whole number, got 'five'"),
        ("mqtt://h?keep_alive_secs=-1", "'keep_alive_secs'"),
        ("mqtt://h?keep_alive_secs=1e3", "'keep_alive_secs'"),
        (
            "mqtt://h?keep_alive_secs=70000",
            "keep_alive must be between 0 and 65535, got 70000 (from query key 'keep_alive_secs')",
        ),
        ("mqtt://h?inflight_num=0", "(from query key 'inflight_num')"),
        ("mqtt://h?conn_timeout_secs=soon", "'conn_timeout_secs'"),
        ("mqtt://h?clean_session=maybe", "'clean_session': expected true or false"),
        ("mqtt://h?protocol_version=3", "'protocol_version': expected 3.1.1 or 5"),
        ("mqtt://h?clean_session=1&clean_start=1", "'clean_start' repeats 'clean_session'"),
        ("mqtt://h?client_id=a&client_id=b", "'client_id' repeats"),
        ("mqtt://h?ca_file=x.pem", "'ca_file' needs a TLS scheme"),
        ("ws://h?alpn=mqtt", "'alpn' needs a TLS scheme"),
        ("mqtt://h:99999", "invalid port"),
        ("mqtt://h:port", "invalid port"),
        ("mqtt://", "needs a host"),
        ("mqtt://:1883", "needs a host"),
        ("mqtt://h/some/path", "has no path"),
        ("mqtt://h#frag", "fragment"),
        ("unix://", "needs the socket path"),
        ("unix://otherhost/tmp/s", "path only"),
        ("mqtt://h?client_id=%FF", "not valid percent-encoded UTF-8"),
        ("mqtt://%FF@h", "user name is not valid"),
        ("mqtt://h?client_id=&clean_session=false", "empty client_id needs clean_start"),
        ("mqtt://:secret@h", "needs a username"),
    ],
)
def test_rejected_forms_name_the_culprit(url: str, message: str) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        options_from_url(url)
    assert message in str(caught.value)


def test_errors_never_echo_the_password() -> None:
    with pytest.raises(InvalidOptionError) as caught:
        options_from_url("mqtt://user:hunter2@h?bogus=1")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(options_from_url("mqtt://user:hunter2@h"))


def test_every_query_key_is_documented() -> None:
    doc = url_fields.__doc__ or ""
    for key in QUERY_KEYS:
        assert f"``{key}``" in doc


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(client_id=_text, username=_text, password=_text)
def test_any_text_survives_percent_encoding(client_id: str, username: str, password: str) -> None:
    url = (
        f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@broker"
        f"?client_id={quote(client_id, safe='')}"
    )
    options = options_from_url(url)
    assert options.client_id == client_id
    assert options.username == username
    assert options.password == password.encode()


def test_url_tls_keys_conflict_with_an_explicit_transport() -> None:
    with pytest.raises(InvalidOptionError, match="ca_file"):
        options_from_url("mqtts://broker/?ca_file=/tmp/ca.pem", transport=TcpTransport())


@pytest.mark.parametrize(
    ("url", "proxy_type", "host", "port", "inner_type"),
    [
        ("mqtt://b?proxy=http://p:3128", HttpProxy, "p", 3128, TcpTransport),
        ("mqtts://b?proxy=https://p", HttpProxy, "p", 443, TlsTransport),
        ("ws://b/mqtt?proxy=http://p", HttpProxy, "p", 80, WebSocketTransport),
        ("mqtt://b?proxy=socks5://p", Socks5Proxy, "p", 1080, TcpTransport),
        ("wss://b?proxy=socks5h://[::1]:9050", Socks5Proxy, "::1", 9050, WebSocketTransport),
    ],
)
def test_proxy_query_key_wraps_the_transport(
    url: str, proxy_type: type, host: str, port: int, inner_type: type
) -> None:
    options = options_from_url(url)
    proxy = options.transport
    assert type(proxy) is proxy_type
    assert (proxy.host, proxy.port) == (host, port)  # type: ignore[attr-defined]
    assert type(proxy.inner) is inner_type  # type: ignore[attr-defined]
    assert (options.host, options.port) == ("b", options_from_url(url.split("?")[0]).port)


def test_proxy_url_credentials_tls_and_dns() -> None:
    secret = quote(quote("p@ss&word", safe=""), safe="")  # encoded twice: a URL in a query
    options = options_from_url(f"mqtt://b?proxy=https%3A%2F%2Fme:{secret}@proxy:8443")
    proxy = options.transport
    assert isinstance(proxy, HttpProxy)
    assert (proxy.username, proxy.password) == ("me", "p@ss&word")
    assert isinstance(proxy.tls, TlsTransport)
    assert proxy_from_url("http://p", TcpTransport()).tls is None
    remote = proxy_from_url("socks5h://u:v@p", TcpTransport())
    local = proxy_from_url("socks5://p", TcpTransport())
    assert isinstance(remote, Socks5Proxy)
    assert isinstance(local, Socks5Proxy)
    assert (remote.remote_dns, remote.username, remote.password) == (True, "u", "v")
    assert (local.remote_dns, local.username) == (False, None)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://b?proxy=ftp://p", "unknown proxy URL scheme 'ftp'"),
        ("mqtt://b?proxy=http://p/path", "scheme://[user:password@]host[:port] only"),
        ("mqtt://b?proxy=socks5://", "needs a host"),
        ("mqtt://b?proxy=socks5://p:0", "invalid proxy port"),
        ("mqtt://b?proxy=socks5://only-user@p", "both a username and a password"),
        ("unix:///tmp/s?proxy=http://p", "cannot go through a proxy"),
    ],
)
def test_bad_proxy_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=re.escape(message)):
        options_from_url(url)


def test_proxy_key_conflicts_with_an_explicit_transport() -> None:
    with pytest.raises(InvalidOptionError, match="proxy"):
        options_from_url("mqtt://b?proxy=http://p", transport=TcpTransport())
