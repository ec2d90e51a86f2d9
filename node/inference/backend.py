"""One model's server as the gateway sees it: where it listens, whether it takes requests, how
many it is answering (for the drain), and its own tokenizer.

The gateway passes a server at most `parallel` requests at once (the slots it serves in
parallel); the rest wait here in line. That wait is the owner's unmet local demand: it is what
moves a GPU from the market to local inference.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

TOKENIZE_TIMEOUT_S = 10.0
QUEUE_MAX_WAIT_S = 600.0  # a request waits this long for a slot, then is answered 503
# llama-cpp-python's server (0.3.x: /extras/tokenize, later /tokenize) takes {"input": ...};
# llama.cpp's llama-server takes {"content": ...} on /tokenize; both answer {"tokens": [...]}
TOKENIZE_PATHS = ("/extras/tokenize", "/tokenize")


class Backend:
    def __init__(self, model: str, host: str = "127.0.0.1", port: int = 0,
                 simulated: bool = False, parallel: int = 0):
        self.model = model
        self.parallel = parallel  # 0: no line, every request goes on at once
        self.host = host
        self.port = port
        self.simulated = simulated
        self.ready = False
        self.draining = False
        self.starved = False  # its server waits for local GPUs: a request for it is demand
        self._inflight = 0
        self._idle = threading.Condition()
        self._tokenize_path: str | None = None
        self._pool: list[http.client.HTTPConnection] = []  # kept alive, idle
        self._overhead: int | None = None

    def available(self) -> bool:
        return self.ready and not self.draining and self.port > 0

    def enter(self, max_wait_s: float = QUEUE_MAX_WAIT_S) -> float | None:
        """Take a slot, waiting in line while all are busy; the seconds waited, or None where
        no slot came (the server began to drain, or `max_wait_s` passed)."""
        with self._idle:
            if not (self.parallel and self._inflight >= self.parallel):
                self._inflight += 1
                return 0.0
            start = time.monotonic()
            deadline = start + max_wait_s
            while self._inflight >= self.parallel and not self.draining:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._idle.wait(left)
            if self.draining:
                return None
            self._inflight += 1
            return time.monotonic() - start

    def leave(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()  # the drain, and the requests in line

    @property
    def inflight(self) -> int:
        return self._inflight

    def drain(self, wait_s: float) -> int:
        """Take no new requests and wait (at most `wait_s`) for those in flight; returns how
        many were still running when the wait ended."""
        deadline = time.monotonic() + wait_s
        with self._idle:
            self.draining = True
            self._idle.notify_all()  # those in line give up their place: 503, retry later
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            return self._inflight

    def connection(self, timeout_s: float) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection to the server (True: reused), else a new one: a new
        TCP connection per request would cost a handshake on every request."""
        with self._idle:
            while self._pool:
                conn = self._pool.pop()
                if conn.port == self.port:
                    return conn, True
                conn.close()  # to the server before its restart on another port
        return self.fresh_connection(timeout_s), False

    def fresh_connection(self, timeout_s: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)

    def release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        """Keep a connection whose answer was read to its end, for the next request; one the
        server closed, or one to a server since restarted on another port, is closed."""
        if reusable and conn.sock is not None and conn.port == self.port:
            with self._idle:
                if len(self._pool) < max(self.parallel, 1) * 2:
                    self._pool.append(conn)
                    return
        conn.close()

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's own tokenizer, less what it adds to any text (a
        begin-of-sequence token), so a completion is counted as it was generated."""
        if self._overhead is None:
            self._overhead = len(self._tokenize(""))
        return max(0, len(self._tokenize(text)) - self._overhead)

    def count_prompt_tokens(self, text: str) -> int:
        """A prompt's tokens as the server counts them in `usage`: its BOS included."""
        return len(self._tokenize(text))

    def _tokenize(self, text: str) -> list:
        body = json.dumps({"input": text, "content": text, "model": self.model}).encode()
        for path in ([self._tokenize_path] if self._tokenize_path else TOKENIZE_PATHS):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=TOKENIZE_TIMEOUT_S)
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            if resp.status == 404:
                continue
            tokens = json.loads(data).get("tokens") if resp.status == 200 else None
            if not isinstance(tokens, list):
                raise ValueError(f"{path} answered {resp.status} without tokens")
            self._tokenize_path = path
            return tokens
        raise ValueError("the server has no tokenizer endpoint (/extras/tokenize, /tokenize)")
