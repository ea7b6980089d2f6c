"""Outgoing rate limit (sans-IO): a token bucket for messages and one for bytes.

Theory of operation. :class:`Throttle` is the user's setting; :class:`RateLimiter` runs it on the
clock the state machine is given. Each bucket holds up to ``rate * burst`` tokens (at least one
message's worth) and refills continuously; a publish may go when the message bucket holds a
whole token and the byte bucket is not in debt, and then takes one message and its size in
bytes, so a packet larger than the byte bucket still goes, once the debt of the previous ones
is paid. Only PUBLISH packets are limited: acks, PINGREQ, SUBSCRIBE, DISCONNECT and AUTH never
wait for it.

Back-off: the broker saying we send too much (PUBACK or PUBREC 0x97 quota exceeded,
DISCONNECT 0x96 message rate too high) halves the effective rates, down to 1/64 of the
setting; every second without such a signal they grow by a quarter again, up to the setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import InvalidOptionError

__all__ = ["RateLimiter", "Throttle"]

#: lowest fraction of the configured rates a back-off can reach
MIN_FACTOR = 1 / 64
#: growth of the rate factor per second without a back-off signal
RECOVERY_PER_SECOND = 1.25
#: a whole token, less what floating-point refills lose on the way
_WHOLE = 1.0 - 1e-9


@dataclass(frozen=True, slots=True)
class Throttle:
    """A limit on outgoing publishes (``MqttOptions(throttle=...)``).

    Attributes:
        messages_per_second: PUBLISH packets per second (``None``: no message limit).
        bytes_per_second: PUBLISH bytes per second, headers included (``None``: no byte
            limit).
        burst: seconds' worth of the rates that may go out at once after a quiet spell
            (at least one message).
    """

    messages_per_second: float | None = None
    bytes_per_second: float | None = None
    burst: float = 0.1

    def __post_init__(self) -> None:
        for name in ("messages_per_second", "bytes_per_second", "burst"):
            value = getattr(self, name)
            if value is None and name != "burst":
                continue
            if type(value) is bool or not isinstance(value, int | float) or not value > 0:
                raise InvalidOptionError(
                    f"throttle {name} must be a positive number, got {value!r}"
                )
        if self.messages_per_second is None and self.bytes_per_second is None:
            raise InvalidOptionError("a throttle needs messages_per_second or bytes_per_second")


class RateLimiter:
    """The buckets of one :class:`Throttle` (see the module doc)."""

    def __init__(self, throttle: Throttle, now: float) -> None:
        self._throttle = throttle
        self._factor = 1.0
        self._updated = now
        self._messages = self._message_capacity()
        self._bytes = self._byte_capacity()
        #: seconds publishes were held back so far
        self.throttled_time = 0.0
        self._held_since: float | None = None

    def _message_capacity(self) -> float:
        rate = self._throttle.messages_per_second
        return 0.0 if rate is None else max(1.0, rate * self._factor * self._throttle.burst)

    def _byte_capacity(self) -> float:
        rate = self._throttle.bytes_per_second
        return 0.0 if rate is None else rate * self._factor * self._throttle.burst

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed <= 0:
            return
        self._updated = now
        if self._factor < 1.0:
            self._factor = min(1.0, self._factor * RECOVERY_PER_SECOND**elapsed)
        limits = self._throttle
        if limits.messages_per_second is not None:
            self._messages = min(
                self._message_capacity(),
                self._messages + elapsed * limits.messages_per_second * self._factor,
            )
        if limits.bytes_per_second is not None:
            self._bytes = min(
                self._byte_capacity(),
                self._bytes + elapsed * limits.bytes_per_second * self._factor,
            )

    def take(self, size: int, now: float) -> bool:
        """Let one publish of ``size`` bytes go now (True, tokens taken) or not (False)."""
        self._refill(now)
        limits = self._throttle
        if limits.messages_per_second is not None and self._messages < _WHOLE:
            return self._hold(now)
        if limits.bytes_per_second is not None and self._bytes < 0.0:
            return self._hold(now)
        if limits.messages_per_second is not None:
            self._messages -= 1.0
        if limits.bytes_per_second is not None:
            self._bytes -= size
        if self._held_since is not None:
            self.throttled_time += now - self._held_since
            self._held_since = None
        return True

    def _hold(self, now: float) -> bool:
        if self._held_since is None:
            self._held_since = now
        return False

    def ready_at(self) -> float:
        """When the next publish may go (the bucket that is short refills by then)."""
        limits = self._throttle
        wait = 0.0
        if limits.messages_per_second is not None and self._messages < _WHOLE:
            wait = (1.0 - self._messages) / (limits.messages_per_second * self._factor)
        if limits.bytes_per_second is not None and self._bytes < 0.0:
            wait = max(wait, -self._bytes / (limits.bytes_per_second * self._factor))
        return self._updated + wait

    @property
    def holding(self) -> bool:
        """True while a publish waits for the buckets."""
        return self._held_since is not None

    def not_holding(self, now: float) -> None:
        """Nothing waits any more (the connection ended, or the queue emptied)."""
        if self._held_since is not None:
            self.throttled_time += now - self._held_since
            self._held_since = None

    def back_off(self, now: float) -> None:
        """The broker said we send too fast: halve the rates (see the module doc)."""
        self._refill(now)
        self._factor = max(MIN_FACTOR, self._factor / 2)
        self._messages = min(self._messages, self._message_capacity())
        self._bytes = min(self._bytes, self._byte_capacity())

    @property
    def factor(self) -> float:
        """The fraction of the configured rates in force now (1.0 unless backed off)."""
        return self._factor
