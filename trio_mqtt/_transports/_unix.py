"""Unix domain socket transport, for a broker on the same machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trio

from .._core._errors import InvalidOptionError, TransportError

__all__ = ["UnixSocketTransport"]


@dataclass(frozen=True, slots=True)
class UnixSocketTransport:
    """MQTT over a Unix domain socket (``trio.open_unix_socket``).

    The host and port given to :meth:`open_stream` are ignored: the socket path says where the
    broker is (mosquitto: ``listener 0 /run/mosquitto/mqtt.sock``).

    Attributes:
        path: file system path of the broker's socket.
    """

    path: str | Path

    def __post_init__(self) -> None:
        if not os.fspath(self.path):
            raise InvalidOptionError("the Unix socket path must not be empty")

    async def open_stream(
        self, host: str = "", port: int = 0, *, max_packet_size: int = 0
    ) -> trio.abc.Stream:
        """Connect to the socket at :attr:`path`.

        Raises:
            TransportError: the socket does not exist, refuses connections or Unix sockets are
                not available on this platform.
        """
        path = os.fspath(self.path)
        try:
            return await trio.open_unix_socket(path)
        except (OSError, RuntimeError) as exc:
            raise TransportError(f"cannot connect to Unix socket {path!r}: {exc}") from exc
