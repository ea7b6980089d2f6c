"""The broker's configuration file: INI sections for listeners, authentication and limits.

Why INI: ``configparser`` is in the standard library of every Python trio-mqtt supports, while
``tomllib`` arrived only in 3.11; a broker configuration needs nothing TOML has and INI lacks.

Format (every section and key is optional; without listener sections the broker listens on
127.0.0.1:1883)::

    [listener.main]
    type = tcp              ; tcp, tls, ws, wss or unix
    host = 0.0.0.0
    port = 1883

    [listener.secure]
    type = tls
    port = 8883
    certfile = server.pem   ; certificate chain, PEM
    keyfile = server.key
    cafile = ca.pem         ; with require_certificate = true: clients need a cert it signed
    require_certificate = false

    [listener.local]
    type = unix
    path = /run/mqtt.sock

    [auth]
    allow_anonymous = false
    password_file = passwords  ; lines user:password, or user:$7$... hashes (mosquitto_passwd)
    acl_file = acl             ; mosquitto acl_file format, see AccessControl

    [limits]                   ; any BrokerConfig field that is a number
    max_connections = 1000
    max_queued_messages = 10000

    [persistence]
    path = broker.db           ; SQLite file for sessions and retained messages
    autosave_interval = 5      ; seconds

Relative paths are relative to the configuration file's folder.
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import hashlib
import hmac
import ssl
from collections.abc import Mapping
from pathlib import Path

from .._core._broker import BrokerConfig
from ._acl import AccessControl
from ._server import Listener

__all__ = ["BrokerSettings", "ConfigError", "PasswordFile", "load_config"]

_NUMERIC = {
    f.name: f.type
    for f in dataclasses.fields(BrokerConfig)
    if f.type in ("int", "float", "int | None")
}


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    """What a configuration file says: the arguments of :func:`open_mqtt_broker`.

    Attributes:
        config: limits and policies.
        listeners: the listeners (empty: none configured).
        persistence: the SQLite file of ``[persistence] path``, or None.
        autosave_interval: seconds between saves.
    """

    config: BrokerConfig
    listeners: list[Listener]
    persistence: str | None = None
    autosave_interval: float = 5.0


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the section and key."""


class PasswordFile:
    """User names and passwords from a file of ``user:password`` lines.

    A password may be stored in clear text or as a mosquitto_passwd hash
    (``$7$ROUNDS$SALT$DIGEST``: PBKDF2-HMAC-SHA512, base64 salt and digest). Comparison is in
    constant time. Use :meth:`authenticate` as ``BrokerConfig(authenticate=...)``.
    """

    def __init__(self, entries: Mapping[str, str]) -> None:
        self._entries = dict(entries)

    @classmethod
    def from_file(cls, path: str | Path) -> PasswordFile:
        """Read a password file.

        Raises:
            ConfigError: a line has no ``:``.
        """
        entries: dict[str, str] = {}
        text = Path(path).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            user, sep, secret = line.partition(":")
            if not sep or not user:
                raise ConfigError(f"{path}, line {number}: expected user:password")
            entries[user] = secret
        return cls(entries)

    def authenticate(self, client_id: str, username: str | None, password: bytes | None) -> bool:
        """Whether ``username`` with ``password`` is in the file."""
        del client_id
        if username is None or password is None:
            return False
        stored = self._entries.get(username)
        if stored is None:
            return False
        if stored.startswith("$7$"):
            return _check_pbkdf2(stored, password)
        return hmac.compare_digest(stored.encode(), password)


def _check_pbkdf2(stored: str, password: bytes) -> bool:
    try:
        _, _, rounds, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha512", password, base64.b64decode(salt), int(rounds))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


def _path(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _listener(name: str, section: configparser.SectionProxy, base: Path) -> Listener:
    where = f"[{section.name}]"
    kind = section.get("type", "tcp")
    try:
        if kind == "unix":
            return Listener("unix", path=_path(base, section["path"]))
        context = None
        if kind in ("tls", "wss"):
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(
                _path(base, section["certfile"]),
                _path(base, section["keyfile"]) if "keyfile" in section else None,
            )
            if "cafile" in section:
                context.load_verify_locations(_path(base, section["cafile"]))
            if section.getboolean("require_certificate", False):
                context.verify_mode = ssl.CERT_REQUIRED
        default_port = {"tcp": 1883, "tls": 8883, "ws": 8080, "wss": 8081}.get(kind, 1883)
        return Listener(
            kind,
            section.get("host", "127.0.0.1"),
            section.getint("port", default_port),
            ssl_context=context,
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: missing key {exc.args[0]!r}") from None
    except (ValueError, OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: str | Path) -> BrokerSettings:
    """Read a configuration file.

    Returns:
        The settings: broker configuration, listeners, persistence.

    Raises:
        ConfigError: unreadable file, unknown section or key, bad value, unreadable password,
            ACL or certificate file.
    """
    file = Path(path)
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))
    try:
        with file.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = file.resolve().parent
    fields: dict[str, object] = {}
    listeners: list[Listener] = []
    persistence: str | None = None
    autosave = 5.0
    for name in parser.sections():
        section = parser[name]
        if name.startswith("listener"):
            listeners.append(_listener(name, section, base))
        elif name == "auth":
            _auth(section, base, fields)
        elif name == "limits":
            _limits(section, fields)
        elif name == "persistence":
            unknown = set(section) - {"path", "autosave_interval"}
            if unknown:
                raise ConfigError(f"[persistence]: unknown key {sorted(unknown)[0]!r}")
            if "path" in section:
                persistence = _path(base, section["path"])
            try:
                autosave = section.getfloat("autosave_interval", 5.0)
            except ValueError:
                raise ConfigError("[persistence]: autosave_interval is not a number") from None
        else:
            raise ConfigError(f"{path}: unknown section [{name}]")
    try:
        config = BrokerConfig(**fields)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return BrokerSettings(config, listeners, persistence, autosave)


def _auth(section: configparser.SectionProxy, base: Path, fields: dict[str, object]) -> None:
    for key in section:
        if key not in ("allow_anonymous", "password_file", "acl_file"):
            raise ConfigError(f"[auth]: unknown key {key!r}")
    try:
        if "allow_anonymous" in section:
            fields["allow_anonymous"] = section.getboolean("allow_anonymous")
        if "password_file" in section:
            passwords = PasswordFile.from_file(_path(base, section["password_file"]))
            fields["authenticate"] = passwords.authenticate
        if "acl_file" in section:
            fields["authorize"] = AccessControl.from_file(
                _path(base, section["acl_file"])
            ).authorize
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[auth]: {exc}") from None


def _limits(section: configparser.SectionProxy, fields: dict[str, object]) -> None:
    for key, value in section.items():
        kind = _NUMERIC.get(key)
        if kind is None:
            raise ConfigError(
                f"[limits]: unknown key {key!r} (known: {', '.join(sorted(_NUMERIC))})"
            )
        try:
            fields[key] = float(value) if kind == "float" else int(value)
        except ValueError:
            raise ConfigError(f"[limits]: {key} = {value!r} is not a number") from None
