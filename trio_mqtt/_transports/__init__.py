"""Transports: each opens a ``trio.abc.Stream`` to the broker."""

from __future__ import annotations

from ._base import Transport as Transport
from ._tcp import TcpTransport as TcpTransport

__all__ = ["TcpTransport", "Transport"]
