"""User-facing connection options, validated when they are built.

:class:`MqttOptions` follows rumqttc's ``MqttOptions`` (names and defaults where they make sense
in Python) and turns into the sans-IO :class:`~trio_mqtt.sansio.SessionConfig` the state machine
runs on. Every check happens in ``__post_init__``, so a bad option fails where it is written,
not minutes later on a reconnect.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from ._core._config import Authenticator, QueueFullPolicy, SessionConfig
from ._core._errors import InvalidOptionError, InvalidTopicError
from ._core._packets import Properties, ProtocolVersion, Will
from ._core._throttle import Throttle
from ._core._topics import validate_topic
from ._store import SessionStore
from ._transports import TcpTransport, Transport
from ._url import explain_option_error, server_fields, url_fields

__all__ = ["BeforeConnect", "MqttOptions", "ReconnectPolicy"]

#: The ``before_connect`` hook: given the options of the coming attempt, return changed ones
#: (or ``None`` to keep them).
BeforeConnect: TypeAlias = Callable[["MqttOptions"], Awaitable["MqttOptions | None"]]

#: Options outside the sans-IO session config that stay fixed for the whole session: the hook
#: may not change them (the session config's own rule is ``ClientState.reconfigure``).
_FIXED_FOR_SESSION = ("request_capacity", "session_store", "before_connect", "servers")

MAX_PACKET_SIZE = 268_435_460  # 1 + 4 bytes of fixed header + 268,435,455
#: Incoming packets are bounded by default: a broker (or an attacker in its place) cannot make
#: us buffer more than this for one packet.
DEFAULT_MAX_INCOMING_PACKET_SIZE = 1024 * 1024
#: Outgoing packets are not: MQTT 3.1.1 gives no way to learn the broker's limit, and an MQTT 5
#: broker announces its own in CONNACK, which lowers this.
DEFAULT_MAX_OUTGOING_PACKET_SIZE = MAX_PACKET_SIZE


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Automatic reconnection with exponential backoff and jitter.

    The n-th consecutive attempt (n = 0, 1, ...) waits
    ``min(max_delay, initial_delay * multiplier**n)``, scaled by a random factor in
    ``[1 - jitter, 1]`` so that many clients cut off together do not return together.
    A successful CONNACK resets the count.

    Attributes:
        initial_delay: seconds before the first retry.
        max_delay: ceiling of the delay in seconds.
        multiplier: growth factor per failed attempt.
        jitter: fraction (0..1) of the delay that is randomised.
        max_attempts: give up (the error propagates) after this many consecutive failures;
            ``None`` retries forever.
    """

    initial_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise InvalidOptionError("need 0 <= initial_delay <= max_delay")
        if self.multiplier < 1:
            raise InvalidOptionError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise InvalidOptionError("jitter must be between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise InvalidOptionError("max_attempts must be >= 1 or None")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before consecutive attempt number ``attempt`` (0-based)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** min(attempt, 64))
        factor = 1.0 - self.jitter * (rng or random).random()
        return base * factor


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidOptionError(f"{name} must be between {low:g} and {high:g}, got {value!r}")


_INTEGERS = (
    "port",
    "keep_alive",
    "inflight",
    "request_capacity",
    "max_incoming_packet_size",
    "max_outgoing_packet_size",
    "topic_alias_maximum",
)
_OPTIONAL_INTEGERS = ("session_expiry_interval", "receive_maximum", "max_queued")
_FLAGS = (
    "clean_start",
    "manual_acks",
    "outgoing_topic_aliases",
    "request_response_information",
    "request_problem_information",
    "resend_on_session_loss",
    "restore_subscriptions",
    "follow_redirects",
    "redirect_credentials",
)


def _check_types(options: MqttOptions) -> None:
    """Refuse values of the wrong type up front (``keep_alive=1.5``, ``clean_start="no"``),
    which would otherwise fail much later or, worse, mean something else."""

    def wrong(name: str, expected: str) -> InvalidOptionError:
        value = getattr(options, name)
        return InvalidOptionError(f"{name} must be {expected}, got {value!r}")

    for name in ("client_id", "host"):
        if not isinstance(getattr(options, name), str):
            raise wrong(name, "a string")
    for name in _INTEGERS + _OPTIONAL_INTEGERS:
        value = getattr(options, name)
        if value is None and name in _OPTIONAL_INTEGERS:
            continue
        if type(value) is bool or not isinstance(value, int):
            raise wrong(name, "a whole number")
    for name in ("connect_timeout", "ping_timeout"):
        value = getattr(options, name)
        if value is None and name == "ping_timeout":
            continue
        if type(value) is bool or not isinstance(value, int | float):
            raise wrong(name, "a number of seconds")
    for name in _FLAGS:
        if not isinstance(getattr(options, name), bool):
            raise wrong(name, "True or False")
    if options.username is not None and not isinstance(options.username, str):
        raise wrong("username", "a string or None")
    if options.password is not None and not isinstance(options.password, str | bytes):
        raise wrong("password", "a string, bytes or None")
    if options.will is not None and not isinstance(options.will, Will):
        raise wrong("will", "a Will or None")
    if options.reconnect is not None and not isinstance(options.reconnect, ReconnectPolicy):
        raise wrong("reconnect", "a ReconnectPolicy or None")


def _check_utf8(name: str, value: str) -> None:
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOptionError(f"{name} is not valid UTF-8") from None
    if len(encoded) > 65535 or "\x00" in value:
        raise InvalidOptionError(f"{name} must be at most 65,535 UTF-8 bytes without U+0000")


@dataclass(frozen=True, slots=True, repr=False)
class MqttOptions:
    """Everything needed to connect and run a session.

    Args:
        client_id: the client identifier. ``""`` asks the broker to assign one (needs a clean
            session in MQTT 3.1.1; an MQTT 5 broker's assigned identifier is adopted).
        host: broker host name or address (ignored by the Unix socket transport).
        port: broker port.
        keep_alive: seconds; a PINGREQ goes out after this much silence in either direction
            (0 = never).
        ping_timeout: seconds to wait for PINGRESP before the link counts as dead; ``None``
            means ``min(keep_alive, 30)``.
        clean_start: MQTT 3.1.1 clean session / MQTT 5 clean start, sent on every CONNECT.
        username: user name for the broker.
        password: password (``str`` is UTF-8 encoded); never appears in ``repr`` or logs.
        will: last will message, published by the broker if we vanish without DISCONNECT.
        protocol_version: :attr:`ProtocolVersion.V311` (default) or :attr:`ProtocolVersion.V5`.
        inflight: outgoing window: QoS 1/2 publishes awaiting acknowledgement at once.
        request_capacity: control requests (subscribe, unsubscribe, acks, disconnect) that
            may queue in the client channel before callers block. Publishes do not use the
            channel: they wait for the outgoing window (at most ``max_queued`` wait for it).
        max_incoming_packet_size: largest packet accepted from the broker (bytes); larger ones
            end the connection with a protocol error. Default 1 MiB (advertised to an MQTT 5
            broker as our Maximum Packet Size).
        max_outgoing_packet_size: largest packet we send; publishing something bigger raises
            :class:`PacketTooLargeError` at once. Default: the protocol's maximum (256 MiB),
            since MQTT 3.1.1 brokers do not say theirs; an MQTT 5 broker's Maximum Packet Size
            lowers it.
        connect_timeout: seconds allowed for opening the transport and receiving CONNACK.
        manual_acks: the application acknowledges incoming QoS 1/2 publishes with
            :meth:`Client.ack`.
        session_expiry_interval: MQTT 5 session expiry in seconds (``None`` = not sent, which
            means 0: the session ends with the connection).
        receive_maximum: MQTT 5 incoming window we advertise (``None`` = 65,535).
        topic_alias_maximum: MQTT 5 topic aliases we accept from the broker.
        outgoing_topic_aliases: assign MQTT 5 topic aliases to outgoing publishes.
        user_properties: MQTT 5 user properties sent with CONNECT.
        request_response_information: MQTT 5: ask the broker for response information.
        request_problem_information: MQTT 5: let the broker send reason strings (default on).
        authenticator: MQTT 5 enhanced authentication.
        resend_on_session_loss: after the broker lost the session, send unacknowledged QoS 1/2
            publishes again as new messages (default) instead of dropping and reporting them.
        restore_subscriptions: after the broker lost the session, subscribe again.
        reconnect: reconnect automatically with this policy (``None`` = never by itself;
            calling :meth:`MqttConnection.poll` again after an error still reconnects).
        transport: how to reach the broker (TCP by default).
        session_store: where the session is kept beyond this connection, keyed by
            ``client_id`` (needs a non-empty one): a :class:`MemorySessionStore` carries it to
            the next connection in this process, a :class:`SqliteSessionStore` across a crash
            and restart. ``None`` (default): the session lives in this connection only. A
            clean start discards what the store holds. See :doc:`/reconnects`.
        before_connect: an async callable run before every connection attempt (the first
            and each reconnect). It receives the options the attempt would use and returns
            changed ones (``options.replace(password=new_token)``) or ``None``; the session
            carries over. See :doc:`/reconnects`.
        servers: broker URLs (``mqtt://``, ``mqtts://``, ``ws://``, ``wss://``, ``unix://``)
            tried in order, sticking to the one that works; each sets host, port, transport
            (and credentials, if it has them) and overrides ``host``/``port``/``transport``.
        follow_redirects: MQTT 5: when the broker answers CONNECT or disconnects with 0x9C (use
            another server) or 0x9D (server moved) and a Server Reference, connect there next
            (off by default).
        redirect_credentials: send ``username`` and ``password`` to a redirect target on
            another host too (default: they are dropped; ``before_connect`` may add its own).
        throttle: a :class:`Throttle` limiting outgoing publishes (messages and bytes per
            second, with a burst); ``None`` (default): no limit. See :doc:`/backpressure`.
        max_queued: publishes (any QoS) that may be admitted and wait to be sent (window full,
            not connected); ``None`` (default) means ``inflight``. With a durable session
            store the waiting QoS 1/2 ones are kept in it. See :doc:`/durable`.
        queue_full: what a publish gets when ``max_queued`` already wait: ``"block"``
            (default: wait, cancellably, like a full window), ``"reject"``
            (:class:`QueueFullError` at the call) or ``"drop_oldest"`` (the oldest waiting
            publish is dropped, counted and logged); a :class:`QueueFullPolicy` or its value.
    """

    client_id: str
    host: str = "localhost"
    port: int = 1883
    keep_alive: int = 60
    ping_timeout: float | None = None
    clean_start: bool = True
    username: str | None = None
    password: str | bytes | None = None
    will: Will | None = None
    protocol_version: ProtocolVersion = ProtocolVersion.V311
    inflight: int = 100
    request_capacity: int = 10
    max_incoming_packet_size: int = DEFAULT_MAX_INCOMING_PACKET_SIZE
    max_outgoing_packet_size: int = DEFAULT_MAX_OUTGOING_PACKET_SIZE
    connect_timeout: float = 5.0
    manual_acks: bool = False
    session_expiry_interval: int | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int = 0
    outgoing_topic_aliases: bool = False
    user_properties: Sequence[tuple[str, str]] = ()
    request_response_information: bool = False
    request_problem_information: bool = True
    authenticator: Authenticator | None = None
    resend_on_session_loss: bool = True
    restore_subscriptions: bool = True
    reconnect: ReconnectPolicy | None = None
    transport: Transport = field(default_factory=TcpTransport)
    session_store: SessionStore | None = None
    before_connect: BeforeConnect | None = None
    servers: Sequence[str] = ()
    follow_redirects: bool = False
    redirect_credentials: bool = False
    throttle: Throttle | None = None
    max_queued: int | None = None
    queue_full: QueueFullPolicy | str = QueueFullPolicy.BLOCK

    def __post_init__(self) -> None:
        _check_types(self)
        try:
            object.__setattr__(self, "queue_full", QueueFullPolicy(self.queue_full))
        except ValueError:
            choices = ", ".join(repr(policy.value) for policy in QueueFullPolicy)
            raise InvalidOptionError(
                f"queue_full must be one of {choices}, got {self.queue_full!r}"
            ) from None
        if self.max_queued is not None:
            _check_range("max_queued", self.max_queued, 1, 10**9)
        if self.throttle is not None and not isinstance(self.throttle, Throttle):
            raise InvalidOptionError("throttle must be a Throttle or None")
        if self.before_connect is not None and not callable(self.before_connect):
            raise InvalidOptionError("before_connect must be an async callable or None")
        if isinstance(self.servers, str):
            raise InvalidOptionError("servers is a sequence of URLs, not one string")
        object.__setattr__(self, "servers", tuple(self.servers))
        for url in self.servers:
            server_fields(url)
        try:
            version = ProtocolVersion(self.protocol_version)
        except ValueError:
            raise InvalidOptionError(
                f"protocol_version must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0), "
                f"got {self.protocol_version!r}"
            ) from None
        object.__setattr__(self, "protocol_version", version)
        v5 = version is ProtocolVersion.V5
        _check_utf8("client_id", self.client_id)
        if not self.client_id and not self.clean_start and not v5:
            raise InvalidOptionError(
                "an empty client_id needs clean_start=True in MQTT 3.1.1 (MQTT-3.1.3-7)"
            )
        if self.session_store is not None:
            if not isinstance(self.session_store, SessionStore):
                raise InvalidOptionError("session_store must implement the SessionStore protocol")
            if not self.client_id:
                raise InvalidOptionError("a session store needs a non-empty client_id")
        if not isinstance(self.host, str) or not self.host:
            raise InvalidOptionError("host must be a non-empty string")
        _check_range("port", self.port, 0, 65535)
        _check_range("keep_alive", self.keep_alive, 0, 65535)
        if self.ping_timeout is not None and self.ping_timeout <= 0:
            raise InvalidOptionError("ping_timeout must be positive")
        if self.username is not None:
            _check_utf8("username", self.username)
        if self.password is not None and self.username is None and not v5:
            raise InvalidOptionError("MQTT 3.1.1 needs a username to send a password")
        if isinstance(self.password, str):
            object.__setattr__(self, "password", self.password.encode("utf-8"))
        if self.password is not None and len(self.password) > 65535:
            raise InvalidOptionError("password must be at most 65,535 bytes")
        if self.will is not None:
            try:
                validate_topic(self.will.topic)
            except InvalidTopicError as exc:
                raise InvalidOptionError(f"will topic: {exc}") from None
            if self.will.qos not in (0, 1, 2):
                raise InvalidOptionError("will qos must be 0, 1 or 2")
        _check_range("inflight", self.inflight, 1, 65000)
        _check_range("request_capacity", self.request_capacity, 1, 1_000_000)
        _check_range("max_incoming_packet_size", self.max_incoming_packet_size, 16, MAX_PACKET_SIZE)
        _check_range("max_outgoing_packet_size", self.max_outgoing_packet_size, 16, MAX_PACKET_SIZE)
        if not self.connect_timeout > 0:
            raise InvalidOptionError("connect_timeout must be positive")
        if self.session_expiry_interval is not None:
            _check_range("session_expiry_interval", self.session_expiry_interval, 0, 2**32 - 1)
        if self.receive_maximum is not None:
            _check_range("receive_maximum", self.receive_maximum, 1, 65535)
        _check_range("topic_alias_maximum", self.topic_alias_maximum, 0, 65535)
        object.__setattr__(self, "user_properties", tuple(self.user_properties))
        for key, value in self.user_properties:
            _check_utf8("user property name", key)
            _check_utf8("user property value", value)
        if not v5:
            v5_only = {
                "session_expiry_interval": self.session_expiry_interval is not None,
                "receive_maximum": self.receive_maximum is not None,
                "topic_alias_maximum": self.topic_alias_maximum != 0,
                "outgoing_topic_aliases": self.outgoing_topic_aliases,
                "user_properties": bool(self.user_properties),
                "request_response_information": self.request_response_information,
                "authenticator": self.authenticator is not None,
                "follow_redirects": self.follow_redirects,
            }
            used = [name for name, is_set in v5_only.items() if is_set]
            if used:
                raise InvalidOptionError(
                    f"{', '.join(used)} need protocol_version=ProtocolVersion.V5"
                )
        if not isinstance(self.transport, Transport):
            raise InvalidOptionError("transport must have an async open_stream() method")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'<hidden>' if name == 'password' and value is not None else repr(value)}"
            for name, value in self._fields().items()
        )
        return f"MqttOptions({shown})"

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttOptions:
        """Options from a URL such as ``mqtts://user:pass@host:8883/?client_id=x``.

        Keyword arguments override what the URL says (for example ``transport=`` for a
        custom TLS context, or ``will=``). See :doc:`/connecting` for the schemes and query
        keys.

        Raises:
            InvalidOptionError: unknown scheme or query key, repeated key, bad value, or
                options that are invalid together; the message names the culprit.
        """
        for name in overrides:
            if name not in cls.__dataclass_fields__:
                raise InvalidOptionError(f"unknown option {name!r}")
        fields = url_fields(url, overrides)
        try:
            return cls(**fields)
        except InvalidOptionError as exc:
            explained = explain_option_error(exc, url, overrides)
            if explained is None:
                raise
            raise explained from None

    def replace(self, **changes: Any) -> MqttOptions:
        """A copy with some options changed (validated again)."""
        return replace(self, **changes)

    def server_options(self, index: int) -> MqttOptions:
        """These options aimed at ``servers[index]`` (its host, port and transport)."""
        return replace(self, **server_fields(self.servers[index]))

    def check_session_change(self, new: MqttOptions) -> None:
        """Refuse ``new`` as the options of a later connection of the same session.

        Only the options outside the session config are checked here; the state machine's
        ``reconfigure`` checks the rest (client id, protocol version, windows, ...).

        Raises:
            InvalidOptionError: ``new`` is not an :class:`MqttOptions`, or changes an option
                that holds for the whole session; the message names it.
        """
        if not isinstance(new, MqttOptions):
            raise InvalidOptionError(
                f"before_connect must return MqttOptions or None, got {type(new).__name__}"
            )
        changed = [name for name in _FIXED_FOR_SESSION if getattr(new, name) != getattr(self, name)]
        if changed:
            raise InvalidOptionError(f"{', '.join(changed)} cannot change during a session")

    @property
    def clean_session(self) -> bool:
        """MQTT 3.1.1 name of ``clean_start``."""
        return self.clean_start

    @property
    def effective_ping_timeout(self) -> float:
        """The PINGRESP wait in seconds actually used."""
        if self.ping_timeout is not None:
            return self.ping_timeout
        return float(min(self.keep_alive, 30)) if self.keep_alive else 30.0

    def session_config(self) -> SessionConfig:
        """The sans-IO session settings these options describe."""
        props = Properties()
        if self.protocol_version is ProtocolVersion.V5:
            props = Properties(
                session_expiry_interval=self.session_expiry_interval,
                user_properties=tuple(self.user_properties),
                request_response_information=1 if self.request_response_information else None,
                request_problem_information=None if self.request_problem_information else 0,
            )
        password = self.password
        assert password is None or isinstance(password, bytes)
        return SessionConfig(
            client_id=self.client_id,
            protocol_version=self.protocol_version,
            keep_alive=self.keep_alive,
            ping_timeout=self.effective_ping_timeout,
            clean_start=self.clean_start,
            username=self.username,
            password=password,
            will=self.will,
            connect_properties=props,
            inflight=self.inflight,
            receive_maximum=self.receive_maximum or 65535,
            max_incoming_packet_size=self.max_incoming_packet_size,
            max_outgoing_packet_size=self.max_outgoing_packet_size,
            topic_alias_maximum=self.topic_alias_maximum,
            outgoing_topic_aliases=self.outgoing_topic_aliases,
            manual_acks=self.manual_acks,
            resend_on_session_loss=self.resend_on_session_loss,
            restore_subscriptions=self.restore_subscriptions,
            authenticator=self.authenticator,
            throttle=self.throttle,
            max_queued=self.max_queued or self.inflight,
            queue_full=QueueFullPolicy(self.queue_full),
        )
