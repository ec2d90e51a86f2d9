"""Secrets kept out of every message sunrig writes: logs, events, errors, pages and metrics.

One registry of the secret values this process holds (tokens, API keys, passwords), filled where
they are read; `redact` takes them out of any text, together with the shapes a secret we were
never told of travels in (a token in a URL's query, a bearer header, a password in a URL or a
JSON field). Errors from outside (requests, urllib3) carry the URL they failed on, query and
all: `http_failure` says what went wrong without it. Log records are scrubbed as they are made,
whichever logger wrote them and whichever handler prints them.

It lives in the lowest layer so that the edges (price feeds, market adapters) and the node share
one rule; it imports nothing of sunrig.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from urllib.parse import quote, quote_plus

import requests

REDACTED = "[redacted]"
# a shorter value would blank ordinary words wherever it occurs; the edges never pass outside
# text through unscrubbed, so such a value is still kept out of errors by the patterns below
MIN_SECRET_CHARS = 4

_NAMES = (r"securitytoken|access_token|refresh_token|token|api[_-]?key|apikey|key|password|"
          r"passwd|pwd|secret|client_secret|signature|sig|auth|authorization|session")
_PATTERNS = (
    # ?securityToken=abc&...: the value up to the next separator
    (re.compile(rf"(?i)\b({_NAMES})=[^&\s\"'<>;,)]+"), rf"\1={REDACTED}"),
    # "Authorization: Bearer abc", "'Bearer abc'", "Basic dXNlcjpwYXNz"
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=:-]+"), rf"\1 {REDACTED}"),
    # "api_key": "abc" in an echoed JSON body
    (re.compile(rf"(?i)([\"']({_NAMES})[\"']\s*:\s*)[\"'][^\"']*[\"']"), rf'\1"{REDACTED}"'),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+:[^/\s@]*@"), rf"\1{REDACTED}@"),
)


class SecretRegistry:
    """The secret values to scrub, in every form they may be written in (URL-encoded in a
    query, escaped inside a JSON string)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | bytes | None) -> None:
        if isinstance(value, bytes):
            value = value.hex()
        value = (value or "").strip()
        if len(value) < MIN_SECRET_CHARS:
            return
        forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            # longest first: a secret that contains another is replaced whole
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None else text


SECRETS = SecretRegistry()  # the process's secrets: one process, one set of credentials


def register(*values: str | bytes | None) -> None:
    """Remember values as secrets, and scrub them from every log record from now on."""
    for value in values:
        SECRETS.add(value)
    install_log_redaction()


def redact(text: object, *also: str) -> str:
    """`text` with every registered secret, each of `also`, and anything shaped like a
    credential replaced by [redacted]."""
    out = SECRETS.scrub(str(text))
    for value in also:
        if value and len(value) >= MIN_SECRET_CHARS:
            for form in {value, quote(value, safe=""), quote_plus(value)}:
                out = out.replace(form, REDACTED)
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def http_failure(exc: BaseException) -> str:
    """What went wrong on an HTTP call, in words that never carry its URL or headers."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS handshake failed"
    if isinstance(exc, requests.ConnectionError):
        reason = _os_reason(exc)
        return f"connection failed ({reason})" if reason else "connection failed"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer broke off"
    return type(exc).__name__  # its text would carry the URL


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's word for a failed connection (refused, unreachable), found in
    the chain of wrapped exceptions requests and urllib3 build."""
    seen: list[BaseException] = [exc]
    for current in seen:
        if len(seen) > 16:
            break
        if isinstance(current, OSError) and current.errno:
            return os.strerror(current.errno)
        for inner in (getattr(current, "reason", None), current.__cause__, current.__context__,
                      *current.args):
            if isinstance(inner, BaseException) and inner not in seen:
                seen.append(inner)
    return None


class SecretsFilter(logging.Filter):
    """Scrubs a record's message, traceback and stack of secrets; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's own to report
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = SecretsFilter()
_install_lock = threading.Lock()


def install_log_redaction() -> None:
    """Scrub every log record as it is made. A filter on a logger misses records that
    propagate from its children, and one on a handler misses handlers added later (journald,
    a test's capture): the record factory sees them all. Installed once per process."""
    with _install_lock:
        current = logging.getLogRecordFactory()
        if getattr(current, "scrubs_secrets", False):
            return

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = current(*args, **kwargs)
            _FILTER.filter(record)
            return record

        factory.scrubs_secrets = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
