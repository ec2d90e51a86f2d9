"""One checked GET of a JSON object from a web service (price feeds, PV forecast services).

An outside service's answer is read within a size and a total time, parsed without NaN or
Infinity and with a clear error for nesting too deep to read, and every failure is a FeedError
in words that carry neither the URL nor a key (a service may echo both).
"""

from __future__ import annotations

import json
import time

import requests

from energy.redact import http_failure, redact

MAX_ANSWER_BYTES = 2 << 20  # a week of 15-minute values is about 30 KiB; a year of hours 1 MiB


class FeedError(Exception):
    """A price feed could not be read or answered something else than prices. The message is
    scrubbed of secrets here, the one place outside failures become ours: a feed's answer may
    echo the URL it was asked, token and all."""

    def __init__(self, message: str):
        super().__init__(redact(message))


def fetch_json(url: str, params: dict, timeout_s: float, name: str) -> dict:
    """A JSON object from a GET, read within a size and a total time, or a FeedError saying
    what went wrong in words that carry neither the URL nor a key."""
    deadline = time.monotonic() + 2 * timeout_s  # the timeout is per read: a drip is bounded too
    try:
        with requests.get(url, params=params, timeout=timeout_s, stream=True,
                          headers={"Accept": "application/json", "User-Agent": "sunrig"}) as r:
            status, body = r.status_code, _read_capped(r, deadline, name)
    except requests.RequestException as exc:
        raise FeedError(f"{name}: request failed: {http_failure(exc)}") from None
    if status == 429:
        raise FeedError(f"{name}: too many requests (HTTP 429); asked again at the next refresh")
    if status != 200:
        raise FeedError(f"{name}: HTTP {status}{_said(body)}")
    doc = _json(body, name)
    if not isinstance(doc, dict):
        raise FeedError(f"{name}: answer is a JSON {type(doc).__name__}, not an object")
    return doc


def _read_capped(r: requests.Response, deadline: float, name: str) -> bytes:
    chunks, size = [], 0
    for chunk in r.iter_content(64 << 10):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise FeedError(f"{name}: answer is larger than {MAX_ANSWER_BYTES >> 20} MiB")
        if time.monotonic() > deadline:
            raise FeedError(f"{name}: request failed: timed out")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes, name: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a JSON number")
    try:
        return json.loads(body, parse_constant=refuse)
    except RecursionError:
        raise FeedError(f"{name}: answer is nested too deeply") from None
    except ValueError as exc:  # a decoding error too: UnicodeDecodeError is a ValueError
        raise FeedError(f"{name}: answer is not JSON ({str(exc)[:80]})") from None


def _said(body: bytes) -> str:
    """What an error answer says, where it says it as both services do (forecast.solar:
    message.text; Open-Meteo: reason), cut short and on one line."""
    try:
        doc = json.loads(body)
        text = doc.get("reason") or doc["message"]["text"]
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return ""
    if not isinstance(text, str):
        return ""
    return ": " + " ".join(text.split())[:120]
