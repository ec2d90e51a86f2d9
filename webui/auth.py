"""The owner's login: one password, hashed with argon2, a session cookie, CSRF tokens, and a limit
on failed logins.

Reading is open while the server is bound to localhost (like evcc); every change (POST, PUT,
PATCH, DELETE) needs the login and the session's CSRF token, in the form field `csrf_token` or
the header `X-CSRF-Token`. Bound beyond localhost, reading needs the login too. The first change
asks the owner to set the password. The hash and the session key live in files only sunrig can
read; neither ever appears in a page, a log line, `/api` or `/metrics`.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD = 10
MAX_FAILURES, FAILURE_WINDOW_S = 5, 300.0
CHANGES = ("POST", "PUT", "PATCH", "DELETE")


class AuthError(Exception):
    """Why a login or a password change was refused, in words for the owner."""


class Auth:
    def __init__(self, state_dir: str | Path, clock=time.monotonic):
        self.dir = Path(state_dir)
        self.hash_file = self.dir / "dashboard.passwd"
        self.hasher = PasswordHasher()
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.session_key = self._secret_file(self.dir / "dashboard.key")

    # --- the password ---------------------------------------------------------------------------
    @property
    def has_password(self) -> bool:
        return self.hash_file.exists()

    def set_password(self, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"the password needs at least {MIN_PASSWORD} characters")
        _write_private(self.hash_file, self.hasher.hash(password).encode())

    def check(self, password: str, client: str) -> None:
        """Raise AuthError unless the password is right and the client is not locked out."""
        with self._lock:
            failures = self._failures[client]
            now = self._clock()
            while failures and now - failures[0] > FAILURE_WINDOW_S:
                failures.popleft()
            if len(failures) >= MAX_FAILURES:
                wait = int(FAILURE_WINDOW_S - (now - failures[0])) + 1
                raise AuthError(f"too many failed logins; try again in {wait} s")
        try:
            ok = self.hasher.verify(self.hash_file.read_text().strip(), password)
        except (VerificationError, InvalidHashError, OSError):
            ok = False
        with self._lock:
            if not ok:
                self._failures[client].append(self._clock())
                raise AuthError("wrong password")
            self._failures.pop(client, None)

    def locked_out(self, client: str) -> bool:
        with self._lock:
            failures = self._failures.get(client) or deque()
            return len([t for t in failures if self._clock() - t <= FAILURE_WINDOW_S]) >= \
                MAX_FAILURES

    # --- CSRF -----------------------------------------------------------------------------------
    @staticmethod
    def new_csrf() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def csrf_ok(expected: str | None, given: str | None) -> bool:
        return bool(expected) and bool(given) and hmac.compare_digest(expected, given)

    @staticmethod
    def _secret_file(path: Path) -> bytes:
        if path.exists():
            return path.read_bytes()
        key = secrets.token_bytes(32)
        _write_private(path, key)
        return key


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, replacing any old one whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
