"""Session stores: where a client session lives between connections and across restarts."""

from __future__ import annotations

from ._base import (
    ChangeKind as ChangeKind,
    MemorySessionStore as MemorySessionStore,
    SessionChange as SessionChange,
    SessionStore as SessionStore,
)
from ._binding import StoreBinding as StoreBinding
from ._sqlite import SqliteSessionStore as SqliteSessionStore

__all__ = [
    "ChangeKind",
    "MemorySessionStore",
    "SessionChange",
    "SessionStore",
    "SqliteSessionStore",
    "StoreBinding",
]
