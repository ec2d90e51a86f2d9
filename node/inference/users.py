"""API keys of the local inference's users: made once, shown once, stored as SHA-256 only.

A key is 32 random bytes from the OS: with 256 bits of entropy no key can be found by guessing,
so a single fast SHA-256 hides it as well as a slow password hash would, and lets the gateway
check a key on every request without spending milliseconds on it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import threading
from datetime import datetime

from node.inference.names import KEY_PREFIX, check_user_name, is_api_key
from node.storage.store import Store


def new_key() -> str:
    raw = secrets.token_bytes(32)
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


class UserExists(ValueError):
    pass


def add_user(store: Store, name: str, now: datetime) -> str:
    """Add a user (or give a revoked one a new key) and return the key, which is never stored."""
    check_user_name(name)
    key = new_key()
    if not store.add_inference_user(name, key_sha256(key), now):
        raise UserExists(f"user {name!r} exists; revoke them first to give them a new key")
    return key


class KeyDirectory:
    """Which user a presented key belongs to, for the gateway. The keys are cached and read
    again whenever the store's users version moves, so a key added or revoked by `sunrig users`
    in another process counts at the next request."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._users: dict[str, str] = {}
        self._version: str | None = None
        self._conn = None
        if store.path != ":memory:":
            # a connection of its own: a lookup never waits behind the agent's writes (WAL)
            self._conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True,
                                         check_same_thread=False, timeout=30)

    def user_for(self, key: str) -> str | None:
        if not is_api_key(key):
            return None
        with self._lock:
            rows = self._read("SELECT value FROM meta WHERE key = ?", [Store.USERS_VERSION])
            version = rows[0][0] if rows else None
            if version is None or version != self._version:
                self._users = dict(self._read("SELECT key_sha256, name FROM inference_users "
                                              "WHERE revoked IS NULL", []))
                self._version = version
            return self._users.get(key_sha256(key))

    def _read(self, sql: str, params: list) -> list[tuple]:
        if self._conn is None:
            return [tuple(r.values()) for r in self.store.query(sql, params)]
        return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
