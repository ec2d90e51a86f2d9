"""The owner's login: one password, hashed with argon2, a session cookie, CSRF tokens, a throttle
on failed logins, and the one rule for where a login may send the browser next.

Reading is open while the server is bound to localhost (like evcc); every change (POST, PUT,
PATCH, DELETE) needs the login and the session's CSRF token, in the form field `csrf_token` or
the header `X-CSRF-Token`. Bound beyond localhost, reading needs the login too. The first change
asks the owner to set the password. The hash and the session key live in files only sunrig can
read; neither ever appears in a page, a log line, `/api` or `/metrics`.

Failed logins slow the guesser down, they never lock the owner out: every local process shares
the owner's address, so a lockout would hand any of them the power to keep the owner away. Each
source may fail a few times freely, then waits twice as long after each failure (at most
MAX_DELAY_S); all sources together are held to one check per GLOBAL_SPACING_S once they fail
often, so guessing from many addresses gains nothing. An attempt that comes early is held until
its turn (at most MAX_DELAY_S) and then checked: the right password still gets in.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from energy.redact import register

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is a way to burn CPU
CHANGES = ("POST", "PUT", "PATCH", "DELETE")
FREE_FAILURES = 3  # typos: no delay for a source's first few failures
BASE_DELAY_S, MAX_DELAY_S = 1.0, 10.0  # then 1, 2, 4, 8, 10, 10 ... seconds
FAILURE_WINDOW_S = 900.0  # a source's failures are forgotten this long after its last one
GLOBAL_FREE_FAILURES, GLOBAL_SPACING_S = 30, 1.0
MAX_SOURCES = 4096  # sources remembered at once: a flood of addresses cannot grow memory
GLOBAL = "*"
URL_SAFE = "/?#&=;:@!$'()*+,~-._%[]"  # kept as they are when a path is made ASCII


class AuthError(Exception):
    """Why a login or a password change was refused, in words for the owner."""


class Throttled(AuthError):
    """Too many attempts at once: nothing was checked; try again after `retry_after_s`."""

    def __init__(self, retry_after_s: float):
        self.retry_after_s = max(1, int(retry_after_s + 0.999))
        super().__init__(f"too many failed logins; try again in {self.retry_after_s} s")


@dataclass
class _Failures:
    count: int = 0
    last: float = float("-inf")
    next_at: float = float("-inf")  # when the next check may run


class Auth:
    def __init__(self, state_dir: str | Path, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.dir = Path(state_dir)
        self.hash_file = self.dir / "dashboard.passwd"
        self.hasher = PasswordHasher()
        self._clock, self._sleep = clock, sleep
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()
        self.session_key = self._secret_file(self.dir / "dashboard.key")
        register(self.session_key)
        if self.has_password:
            register(self.hash_file.read_text().strip())

    # --- the password ---------------------------------------------------------------------------
    @property
    def has_password(self) -> bool:
        return self.hash_file.exists()

    def set_password(self, password: str, confirm: str | None = None) -> None:
        """Keep the owner's new password as an argon2 hash. `confirm`, where the form asked
        for the password twice, must match it: a typo here would lock the owner out."""
        if confirm is not None and not hmac.compare_digest(password.encode(), confirm.encode()):
            raise AuthError("the two passwords differ; type the same one twice")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"the password needs at least {MIN_PASSWORD} characters")
        if len(password) > MAX_PASSWORD:
            raise AuthError(f"the password may have at most {MAX_PASSWORD} characters")
        hashed = self.hasher.hash(password)
        register(password, hashed)
        _write_private(self.hash_file, hashed.encode())

    def check(self, password: str, client: str) -> None:
        """Raise AuthError unless the password is right. An attempt that comes before its
        source's turn waits for it (at most MAX_DELAY_S); one that would wait longer is
        refused unchecked with Throttled."""
        wait = self._reserve(client)
        if wait > 0:
            self._sleep(wait)
        try:
            ok = len(password) <= MAX_PASSWORD and self.hasher.verify(
                self.hash_file.read_text().strip(), password)
        except (VerificationError, InvalidHashError, OSError):
            ok = False
        with self._lock:
            if ok:
                self._failures.pop(client, None)
                register(password)
                return
            self._failed(client, self._clock())
        raise AuthError("wrong password")

    def retry_after_s(self, client: str) -> float:
        """How long the next attempt from `client` would wait for its turn now."""
        with self._lock:
            now = self._clock()
            return max(0.0, self._turn(client, now) - now)

    def _reserve(self, client: str) -> float:
        """Take the next turn of this source and of all sources; return how long to wait."""
        with self._lock:
            now = self._clock()
            slot = self._turn(client, now)
            if slot - now > MAX_DELAY_S:
                raise Throttled(slot - now - MAX_DELAY_S)
            for key, spacing in ((client, _delay), (GLOBAL, _global_spacing)):
                state = self._failures.get(key)
                if state is not None:  # the attempts after this one wait their own turn
                    state.next_at = slot + spacing(state.count)
            return slot - now

    def _turn(self, client: str, now: float) -> float:
        slot = now
        for key in (client, GLOBAL):
            state = self._failures.get(key)
            if state is not None and now - state.last > FAILURE_WINDOW_S:
                del self._failures[key]  # forgotten
            elif state is not None:
                slot = max(slot, state.next_at)
        return slot

    def _failed(self, client: str, now: float) -> None:
        if client not in self._failures and len(self._failures) >= MAX_SOURCES:
            self._forget_oldest()
        for key, spacing in ((client, _delay), (GLOBAL, _global_spacing)):
            state = self._failures.setdefault(key, _Failures())
            state.count, state.last = state.count + 1, now
            state.next_at = max(state.next_at, now + spacing(state.count))

    def _forget_oldest(self) -> None:
        sources = sorted((s.last, k) for k, s in self._failures.items() if k != GLOBAL)
        for _, key in sources[:len(sources) // 4 or 1]:
            del self._failures[key]

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


def _delay(failures: int) -> float:
    """A source's wait after `failures` failed logins: none at first, then doubling."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(BASE_DELAY_S * 2 ** (failures - FREE_FAILURES), MAX_DELAY_S)


def _global_spacing(failures: int) -> float:
    return GLOBAL_SPACING_S if failures >= GLOBAL_FREE_FAILURES else 0.0


def safe_next(target: object, default: str = "/") -> str:
    r"""Where a login may send the browser: a path on this site, or `default`.

    Judged on what a browser makes of it (WHATWG URL parsing: leading and trailing C0 controls
    and spaces dropped, tabs and newlines dropped anywhere, a backslash read as a slash), and
    again after percent-decoding and Unicode compatibility folding, since a proxy or a later
    redirect may apply either: `/\t/evil`, `/%2F/evil` and `/\uff0fevil` all end up `//evil`.
    """
    text = _as_browser_reads(str(target or ""))
    if len(text) > 2048 or not _is_local_path(text):
        return default
    decoded = text
    for _ in range(4):  # percent-encoding nested a few times over
        decoded, before = _as_browser_reads(unquote(decoded)), decoded
        folded = _as_browser_reads(unicodedata.normalize("NFKC", decoded))
        if not _is_local_path(decoded) or not _is_local_path(folded):
            return default
        if decoded == before:
            return quote(text, safe=URL_SAFE)  # a header and a form field carry it as ASCII
    return default  # still changing: nobody honest encodes a path four times


def _as_browser_reads(text: str) -> str:
    text = text.strip("".join(map(chr, range(0x21))))
    return text.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")


def _is_local_path(text: str) -> bool:
    if not text.startswith("/") or text.startswith("//"):
        return False
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text):
        return False
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc


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
