"""One OpenAI-compatible endpoint in front of the owner's inference servers.

The standard library's ThreadingHTTPServer with http.client to the servers: a thread per
connection and a plain socket copy add well under a millisecond, need nothing installed, and a
stream is copied event by event as the server writes it (read1 returns what has arrived; each
event goes out as its own HTTP chunk, flushed at once), never buffered whole.

Routed by the request's `model`. Errors come in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`): 401 for a missing or unknown key, 404 for
an unknown model or path, 429 over the user's rate limit, 503 while the model's server is not
ready. Request and answer bodies pass through memory only; what is kept is a `Usage` row.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from node.inference.backend import Backend
from node.inference.metering import (
    COUNTED,
    NONE,
    REPORTED,
    UNMETERED,
    StreamMeter,
    Usage,
    counted_usage,
    prompt_text,
    usage_of,
)
from node.inference.users import KeyDirectory

log = logging.getLogger("sunrig.inference")

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
             "/v1/embeddings": "embeddings"}
MAX_BODY_BYTES = 16 << 20  # a long context is a few MiB of JSON
UPSTREAM_TIMEOUT_S = 600.0  # a long generation on a busy server
READ_CHUNK = 65536
TAIL_WAIT_S = 1.0  # for the end of a stream after its [DONE]


class GatewayError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, kind: str, code: str | None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers or {}

    def body(self) -> bytes:
        return json.dumps({"error": {"message": self.message, "type": self.kind, "param": None,
                                     "code": self.code}}).encode()


class RateLimiter:
    """Requests per minute per user as a token bucket: a burst of up to a minute's worth, then
    the configured pace."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic):
        self.rate_per_s = per_minute / 60.0
        self.capacity = max(1.0, per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, user: str) -> float:
        """0 if the request may go; else the seconds until it may."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(user, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[user] = (tokens, now)
                return (1.0 - tokens) / self.rate_per_s
            self._buckets[user] = (tokens - 1.0, now)
            return 0.0


class Gateway:
    """The gateway's parts; `start()` serves it on a thread of its own."""

    def __init__(self, backends: Callable[[], dict[str, Backend]], keys: KeyDirectory,
                 limiter: RateLimiter, meter: Callable[[Usage], None],
                 host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None):
        self.backends, self.keys, self.limiter, self.meter = backends, keys, limiter, meter
        self.rejected: dict[tuple[str, str, int], int] = {}  # (user, model, status): count
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"gateway": self})
        self.server = ThreadingHTTPServer((host, port), handler, bind_and_activate=False)
        self.server.daemon_threads = True
        if ":" in host:
            self.server.address_family = socket.AF_INET6
            self.server.socket = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.server.server_bind()
        self.server.server_activate()
        if tls is not None:
            # the handshake on the connection's own thread, at its first read: done in accept()
            # it would let one client that never starts it hold up every other
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.tls = tls is not None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> Gateway:
        self._thread = threading.Thread(target=self.server.serve_forever, name="gateway",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count_rejected(self, user: str, model: str, status: int) -> None:
        with self._lock:
            key = (user, model, status)
            self.rejected[key] = self.rejected.get(key, 0) + 1


class _Handler(BaseHTTPRequestHandler):
    gateway: Gateway
    protocol_version = "HTTP/1.1"  # keep-alive for clients; streams go out chunked
    # headers, body and each event leave at once: Nagle's wait for an ACK would add delay
    disable_nagle_algorithm = True
    server_version = "sunrig-gateway"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Requests are metered, not logged: a line per request would only repeat the store."""

    def do_GET(self) -> None:  # noqa: N802
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _answer(self, route: Callable[[], None]) -> None:
        try:
            route()
        except GatewayError as exc:
            self._drain_body()
            self._send(exc.status, exc.body(), exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _get(self) -> None:
        if self.path.split("?")[0] != "/v1/models":
            raise _not_found_path(self.path)
        self._user()
        data = [{"id": name, "object": "model", "created": 0,
                 "owned_by": "sunrig (simulated)" if b.simulated else "sunrig"}
                for name, b in sorted(self.gateway.backends().items())]
        self._send(200, json.dumps({"object": "list", "data": data}).encode())

    def _post(self) -> None:
        endpoint = ENDPOINTS.get(self.path.split("?")[0])
        if endpoint is None:
            raise _not_found_path(self.path)
        user = self._user()
        body = self._json_body()
        model = body.get("model")
        backend = self.gateway.backends().get(model) if isinstance(model, str) else None
        if backend is None:
            self.gateway.count_rejected(user, "", 404)
            raise GatewayError(404, f"The model {_shown(model)} does not exist here; "
                               "GET /v1/models lists those served", "invalid_request_error",
                               "model_not_found")
        wait_s = self.gateway.limiter.take(user)
        if wait_s > 0:
            self.gateway.count_rejected(user, model, 429)
            raise GatewayError(429, f"Rate limit reached for {user}: "
                               f"{self.gateway.limiter.capacity:g} requests per minute",
                               "rate_limit_error", "rate_limit_exceeded",
                               {"Retry-After": str(max(1, round(wait_s)))})
        _Exchange(self, backend, user, endpoint, body).run()

    def _user(self) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        user = self.gateway.keys.user_for(key.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise GatewayError(401, "Incorrect or missing API key; `sunrig users add NAME` "
                               "makes one", "invalid_request_error", "invalid_api_key")
        return user

    def _json_body(self) -> dict:
        length = self._length()
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise GatewayError(413, f"The request body is larger than {MAX_BODY_BYTES >> 20} MiB",
                               "invalid_request_error", "request_too_large")
        raw = self.rfile.read(length)
        self._body_read = True
        self.raw_body = raw
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise GatewayError(400, "The request body is not valid JSON",
                               "invalid_request_error", "invalid_json") from None
        if not isinstance(body, dict):
            raise GatewayError(400, "The request body must be a JSON object",
                               "invalid_request_error", "invalid_json")
        return body

    def _length(self) -> int:
        value = self.headers.get("Content-Length")
        if value is None or not value.isdigit() or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise GatewayError(411, "A request body needs a Content-Length",
                               "invalid_request_error", "length_required")
        return int(value)

    def _drain_body(self) -> None:
        """An error answered before the body was read: read it off (if small) so the next
        request on this connection starts where it should, else close the connection."""
        if getattr(self, "_body_read", False) or self.command != "POST":
            return
        value = self.headers.get("Content-Length", "")
        if value.isdigit() and int(value) <= MAX_BODY_BYTES:
            self.rfile.read(int(value))
        else:
            self.close_connection = True

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _not_found_path(path: str) -> GatewayError:
    return GatewayError(404, f"No such endpoint {_shown(path.split('?')[0])}; this gateway "
                        "serves /v1/models, /v1/chat/completions, /v1/completions and "
                        "/v1/embeddings", "invalid_request_error", "unknown_url")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:80]) + ("..." if len(value) > 80 else "")
    return "(missing)" if value is None else f"of type {type(value).__name__}"


class _Exchange:
    """One request passed to its model's server and its answer passed back, metered."""

    def __init__(self, handler: _Handler, backend: Backend, user: str, endpoint: str,
                 body: dict):
        self.h, self.backend, self.user, self.endpoint, self.body = (
            handler, backend, user, endpoint, body)
        self.stream = body.get("stream") is True and endpoint != "embeddings"
        self.started = time.perf_counter()
        self.queue_ms = 0.0

    def run(self) -> None:
        if not self.backend.available():
            self._record(503, None, NONE)
            raise GatewayError(503, f"The model {self.backend.model!r} is not ready yet; retry "
                               "shortly", "server_error", "model_not_ready",
                               {"Retry-After": "5"})
        waited_s = self.backend.enter()
        if waited_s is None:
            self._record(503, None, NONE)
            raise GatewayError(503, f"The model {self.backend.model!r} is busy or moving to "
                               "other GPUs; retry shortly", "server_error", "model_busy",
                               {"Retry-After": "5"})
        self.queue_ms = waited_s * 1000.0
        try:
            self._forward()
        finally:
            self.backend.leave()

    def _forward(self) -> None:
        wants_usage = False
        payload = self.h.raw_body  # passed on as it came, unless usage must be asked for
        if self.stream:
            options = self.body.get("stream_options")
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            if not wants_usage:
                self.body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                               "include_usage": True}
                payload = json.dumps(self.body).encode()
        conn, resp = self._send_upstream(payload)
        kept = False
        try:
            if self.stream and resp.status == 200 and resp.getheader(
                    "Content-Type", "").startswith("text/event-stream"):
                self._pass_stream(resp, wants_usage)
            else:
                self._pass_whole(resp)
            kept = resp.isclosed() or _finished(conn, resp)
        finally:
            self.backend.release(conn, kept)

    def _send_upstream(self, payload: bytes) -> tuple[http.client.HTTPConnection,
                                                      http.client.HTTPResponse]:
        """The request on a kept-alive connection to the server; where that connection turns
        out closed by the server, once more on a fresh one."""
        conn, reused = self.backend.connection(UPSTREAM_TIMEOUT_S)
        while True:
            try:
                conn.request("POST", self.h.path, payload, {"Content-Type": "application/json"})
                return conn, conn.getresponse()
            except OSError as exc:
                conn.close()
                if reused and isinstance(exc, ConnectionError):  # closed while idle, not a hang
                    conn, reused = self.backend.fresh_connection(UPSTREAM_TIMEOUT_S), False
                    continue
                log.warning("model %s: its server did not answer: %s", self.backend.model, exc)
                self._record(502, None, NONE)
                raise GatewayError(502, f"The model {self.backend.model!r}'s server did not "
                                   "answer", "server_error", "upstream_unavailable") from None

    def _pass_whole(self, resp: http.client.HTTPResponse) -> None:
        data = resp.read()
        usage = None
        if resp.status == 200:
            try:
                usage = usage_of(json.loads(data))
            except ValueError:
                usage = None
        # the answer first: storing its usage is not the client's wait
        self.h._send(resp.status, data, content_type=resp.getheader("Content-Type",
                                                                    "application/json"))
        self._record(resp.status, usage, REPORTED if usage else
                     (UNMETERED if resp.status == 200 else NONE))

    def _pass_stream(self, resp: http.client.HTTPResponse, wants_usage: bool) -> None:
        h = self.h
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        meter = StreamMeter(self.endpoint, wants_usage)
        status = 200
        try:
            done = self._copy_events(resp, meter)
        except OSError as exc:  # the server went away mid-stream
            log.warning("model %s: stream broken off: %s", self.backend.model, exc)
            done, status = False, 502
        usage, how = meter.usage, REPORTED
        if usage is None:
            usage = counted_usage(self.backend, prompt_text(self.endpoint, self.body),
                                  "".join(meter.text))
            how = COUNTED if usage else UNMETERED
            if usage is not None and wants_usage:
                self._write_chunk(meter.usage_chunk(usage))
        if done:
            self._write_chunk(b"data: [DONE]\n\n")
        self._end_chunks()
        self._record(status, usage, how)

    def _copy_events(self, resp: http.client.HTTPResponse, meter: StreamMeter) -> bool:
        """Each event on to the client as soon as it is whole (those that came in one read go
        out in one chunk), as the server wrote it; True once [DONE] came."""
        pending = b""
        while True:
            data = resp.read1(READ_CHUNK)
            if not data:
                return False
            pending += data.replace(b"\r\n", b"\n") if b"\r" in data else data
            *events, pending = pending.split(b"\n\n")
            out = []
            for event in events:
                payload = _event_data(event)
                if payload == b"[DONE]":
                    self._write_chunk(b"".join(out))
                    return True
                if payload is None or meter.forward(payload):
                    out.append(event + b"\n\n")
            if out:
                self._write_chunk(b"".join(out))

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self) -> None:
        self.h.wfile.write(b"0\r\n\r\n")

    def _record(self, status: int, usage: tuple[int, int] | None, how: str) -> None:
        if how == UNMETERED:
            log.warning("model %s: an answer for %s carried no usage and its tokens could not "
                        "be counted", self.backend.model, self.user)
        prompt, completion = usage or (0, 0)
        self.h.gateway.meter(Usage(
            self.user, self.backend.model, prompt, completion,
            round((time.perf_counter() - self.started) * 1000.0, 3), self.endpoint,
            self.stream, status, how, round(self.queue_ms, 3)))


def _finished(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> bool:
    """After a stream's [DONE] (the client has its whole answer by now): read what is left of
    the upstream answer, its last empty chunk, so the connection may carry the next request;
    False where that does not come at once."""
    try:
        conn.sock.settimeout(TAIL_WAIT_S)
        left = resp.read()
        conn.sock.settimeout(UPSTREAM_TIMEOUT_S)
    except (OSError, http.client.HTTPException, AttributeError):
        return False
    return not left and resp.isclosed()


def _event_data(event: bytes) -> bytes | None:
    """The data of one server-sent event (its `data:` lines joined), or None if it has none."""
    if event.startswith(b"data:") and b"\n" not in event:  # the usual event: one data line
        return event[5:].lstrip()
    lines = [line[5:].lstrip() if line.startswith(b"data:") else None
             for line in event.split(b"\n")]
    data = [line for line in lines if line is not None]
    return b"\n".join(data) if data else None
