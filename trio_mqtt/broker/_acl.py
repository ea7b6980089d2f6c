"""Access control by topic pattern, in the format of mosquitto's ``acl_file``.

Theory of operation
-------------------
An ACL is a list of rules, each ``(access, filter)``, where access is ``read``, ``write``,
``readwrite`` or ``deny``. Rules before any ``user NAME`` line apply to anonymous clients;
rules after it to that user; ``pattern`` rules apply to everyone, with ``%c`` replaced by the
client identifier and ``%u`` by the user name. A client may publish to a topic when a
``write``/``readwrite`` rule matches it and no ``deny`` rule does; it receives a message when a
``read``/``readwrite`` rule matches the message's topic (checked per delivery, so a subscription
to ``#`` only brings what the client may read). SUBSCRIBE itself is always granted. With no ACL
at all everything is allowed.

The file format, one rule per line (``#`` starts a comment)::

    topic read sensors/#
    user alice
    topic readwrite alice/#
    pattern write clients/%c/status
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .._core._topics import matches, valid_filter

__all__ = ["AccessControl", "AclError"]

_ACCESS = {"read": (True, False), "write": (False, True), "readwrite": (True, True)}


class AclError(ValueError):
    """An ACL line could not be understood; the message names the line."""


@dataclass(frozen=True)
class _Rule:
    topic_filter: str
    read: bool
    write: bool
    deny: bool = False


class AccessControl:
    """Topic rules per user (``None``: anonymous) plus patterns for everyone.

    Build one with :meth:`parse` or :meth:`from_file` and pass :meth:`authorize` as
    ``BrokerConfig(authorize=...)``.
    """

    def __init__(self) -> None:
        self._users: dict[str | None, list[_Rule]] = {}
        self._patterns: list[_Rule] = []

    @classmethod
    def parse(cls, lines: Iterable[str], source: str = "ACL") -> AccessControl:
        """Read rules in mosquitto's ``acl_file`` format.

        Raises:
            AclError: a line is not ``user NAME``, ``topic [ACCESS] FILTER`` or
                ``pattern [ACCESS] FILTER``, or its filter is invalid.
        """
        acl = cls()
        user: str | None = None
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword, _, rest = line.partition(" ")
            rest = rest.strip()
            if keyword == "user":
                if not rest:
                    raise AclError(f"{source}, line {number}: 'user' needs a name")
                user = rest
                continue
            if keyword not in ("topic", "pattern"):
                raise AclError(f"{source}, line {number}: unknown keyword {keyword!r}")
            access, _, topic_filter = rest.partition(" ")
            if access in (*_ACCESS, "deny") and topic_filter.strip():
                topic_filter = topic_filter.strip()
            else:
                access, topic_filter = "readwrite", rest
            probe = topic_filter.replace("%c", "c").replace("%u", "u")
            if not valid_filter(probe):
                raise AclError(f"{source}, line {number}: invalid topic filter {topic_filter!r}")
            if access == "deny":
                rule = _Rule(topic_filter, False, False, True)
            else:
                rule = _Rule(topic_filter, *_ACCESS[access])
            if keyword == "pattern":
                acl._patterns.append(rule)
            else:
                acl._users.setdefault(user, []).append(rule)
        return acl

    @classmethod
    def from_file(cls, path: str | Path) -> AccessControl:
        """Read an ACL file (see :meth:`parse`)."""
        with open(path, encoding="utf-8") as file:
            return cls.parse(file, str(path))

    def _rules(self, client_id: str, username: str | None) -> list[_Rule]:
        rules = list(self._users.get(username, ()))
        for pattern in self._patterns:
            topic_filter = pattern.topic_filter
            if "%c" in topic_filter or "%u" in topic_filter:
                if ("%u" in topic_filter and username is None) or any(
                    char in (client_id + (username or "")) for char in "+#/"
                ):
                    continue  # a name with wildcards or levels must not widen a pattern
                topic_filter = topic_filter.replace("%c", client_id).replace("%u", username or "")
            rules.append(_Rule(topic_filter, pattern.read, pattern.write, pattern.deny))
        return rules

    def authorize(self, client_id: str, username: str | None, action: str, topic: str) -> bool:
        """Whether ``action`` (``"publish"``, ``"subscribe"`` or ``"receive"``) on ``topic`` is
        allowed for this client."""
        if action == "subscribe":
            return True
        rules = self._rules(client_id, username)
        want_write = action == "publish"
        allowed = False
        for rule in rules:
            if not matches(topic, rule.topic_filter):
                continue
            if rule.deny:
                return False
            if rule.write if want_write else rule.read:
                allowed = True
        return allowed
