"""``trio-mqtt broker`` and its configuration file (listeners, password file, ACL, limits)."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trio_mqtt import ConnectionRefused, MqttOptions, QoS, open_mqtt_connection
from trio_mqtt.broker import (
    AccessControl,
    AclError,
    ConfigError,
    PasswordFile,
    load_config,
    open_mqtt_broker,
)

REPO = Path(__file__).resolve().parent.parent


def hashed(password: str, salt: bytes = b"0123456789ab", rounds: int = 101) -> str:
    """A mosquitto_passwd ``$7$`` hash, computed independently of the code under test."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$7${rounds}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_password_file_accepts_hashes_and_clear_text(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(f"alice:{hashed('secret')}\nbob:plain\n# comment\n", encoding="utf-8")
    passwords = PasswordFile.from_file(path)
    assert passwords.authenticate("c", "alice", b"secret")
    assert not passwords.authenticate("c", "alice", b"wrong")
    assert passwords.authenticate("c", "bob", b"plain")
    assert not passwords.authenticate("c", "carol", b"plain")
    assert not passwords.authenticate("c", None, None)
    path.write_text("no colon here\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        PasswordFile.from_file(path)


def test_acl_rules_users_patterns_and_deny() -> None:
    acl = AccessControl.parse(
        [
            "topic read public/#",
            "user alice",
            "topic readwrite alice/#",
            "topic deny alice/secret",
            "pattern write clients/%c/status",
            "pattern read users/%u/#",
        ]
    )
    allowed = acl.authorize
    assert allowed("c1", None, "receive", "public/x")
    assert not allowed("c1", None, "publish", "public/x")
    assert allowed("c1", "alice", "publish", "alice/x")
    assert not allowed("c1", "alice", "publish", "alice/secret")
    assert allowed("c1", "bob", "publish", "clients/c1/status")
    assert not allowed("c1", "bob", "publish", "clients/c2/status")
    assert allowed("c1", "bob", "receive", "users/bob/inbox")
    assert not allowed("c1", None, "receive", "users/bob/inbox")
    assert not allowed("+", "bob", "publish", "clients/x/status")  # no widening by names
    assert allowed("anyone", None, "subscribe", "#")
    with pytest.raises(AclError, match="line 1"):
        AccessControl.parse(["topics read x"])
    with pytest.raises(AclError, match="invalid topic filter"):
        AccessControl.parse(["topic read a/#/b"])


def test_config_file_listeners_auth_and_limits(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("alice:secret\n", encoding="utf-8")
    (tmp_path / "acl").write_text("user alice\ntopic readwrite a/#\n", encoding="utf-8")
    config_file = tmp_path / "broker.ini"
    config_file.write_text(
        "[listener.main]\nport = 0\n\n"
        "[listener.local]\ntype = unix\npath = mqtt.sock\n\n"
        "[auth]\nallow_anonymous = false\npassword_file = pw\nacl_file = acl\n\n"
        "[limits]\nmax_connections = 5\nmax_queued_messages = 7 ; a comment\n\n"
        "[persistence]\npath = state.db\nautosave_interval = 2.5\n",
        encoding="utf-8",
    )
    settings = load_config(config_file)
    config, listeners = settings.config, settings.listeners
    assert (settings.persistence, settings.autosave_interval) == (str(tmp_path / "state.db"), 2.5)
    assert (config.max_connections, config.max_queued_messages) == (5, 7)
    assert config.allow_anonymous is False
    assert [listener.kind for listener in listeners] == ["tcp", "unix"]
    assert listeners[1].path == str(tmp_path / "mqtt.sock")
    assert config.authenticate is not None
    assert config.authenticate("c", "alice", b"secret")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nonsense]\n", "unknown section"),
        ("[limits]\nmax_bananas = 3\n", "unknown key 'max_bananas'"),
        ("[limits]\nmax_connections = many\n", "is not a number"),
        ("[limits]\nmax_connections = 0\n", "at least 1"),
        ("[auth]\npassword_file = missing\n", r"\[auth\]"),
        ("[listener.x]\ntype = tls\nport = 0\n", "missing key 'certfile'"),
        ("[listener.x]\ntype = carrier-pigeon\n", "unknown listener kind"),
        ("not ini at all", "broker.ini"),
        ("[persistence]\nfile = x\n", "unknown key 'file'"),
    ],
)
def test_config_file_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broker.ini"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


async def test_a_configured_broker_enforces_its_password_and_acl(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(f"alice:{hashed('secret')}\n", encoding="utf-8")
    (tmp_path / "acl").write_text("user alice\ntopic readwrite a/#\n", encoding="utf-8")
    path = tmp_path / "broker.ini"
    path.write_text("[auth]\npassword_file = pw\nacl_file = acl\n", encoding="utf-8")
    config = load_config(path).config
    with trio.fail_after(10):
        async with open_mqtt_broker(config=config) as broker:
            good = MqttOptions(
                "alice", broker.host, broker.port, username="alice", password="secret"
            )
            with pytest.raises(ConnectionRefused):
                async with open_mqtt_connection(good.replace(password="nope")):
                    pass  # pragma: no cover
            with pytest.raises(ConnectionRefused):
                async with open_mqtt_connection(MqttOptions("anon", broker.host, broker.port)):
                    pass  # pragma: no cover
            async with open_mqtt_connection(good) as conn:
                await conn.client.subscribe("#", QoS.AT_LEAST_ONCE)
                await conn.client.publish("b/denied", b"no", qos=QoS.AT_LEAST_ONCE)
                await conn.client.publish("a/ok", b"yes", qos=QoS.AT_LEAST_ONCE)
                message = await conn.messages().__anext__()
                assert (message.topic, message.payload) == ("a/ok", b"yes")


def test_broker_command_serves_until_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "trio_mqtt", "broker", "--port", "0"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # ends at EOF if the process dies first
            assert line.startswith("listening on mqtt://127.0.0.1:"), line
            port = int(line.rsplit(":", 1)[1])

            async def use() -> bytes:
                with trio.fail_after(10):
                    options = MqttOptions("cli-user", "127.0.0.1", port)
                    async with open_mqtt_connection(options) as conn:
                        await conn.client.subscribe("cli/t", QoS.AT_LEAST_ONCE)
                        await conn.client.publish("cli/t", b"served", qos=QoS.AT_LEAST_ONCE)
                        message = await conn.messages().__anext__()
                        return message.payload

            assert trio.run(use) == b"served"
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=15)
        finally:
            process.kill()
    assert process.returncode == 143, err
    assert err == ""


def test_broker_command_reports_a_bad_config_file_in_one_line(tmp_path: Path) -> None:
    from trio_mqtt.__main__ import main

    path = tmp_path / "broken.ini"
    path.write_text("[limits]\nmax_connections = lots\n", encoding="utf-8")
    assert main(["broker", "-c", str(path)]) == 2
