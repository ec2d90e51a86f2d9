"""One model's server as the gateway sees it: where it listens, whether it takes requests, how
many it is answering (for the drain), and its own tokenizer."""

from __future__ import annotations

import http.client
import json
import threading
import time

TOKENIZE_TIMEOUT_S = 10.0
# llama-cpp-python's server (0.3.x: /extras/tokenize, later /tokenize) takes {"input": ...};
# llama.cpp's llama-server takes {"content": ...} on /tokenize; both answer {"tokens": [...]}
TOKENIZE_PATHS = ("/extras/tokenize", "/tokenize")


class Backend:
    def __init__(self, model: str, host: str = "127.0.0.1", port: int = 0,
                 simulated: bool = False):
        self.model = model
        self.host = host
        self.port = port
        self.simulated = simulated
        self.ready = False
        self.draining = False
        self._inflight = 0
        self._idle = threading.Condition()
        self._tokenize_path: str | None = None
        self._overhead: int | None = None

    def available(self) -> bool:
        return self.ready and not self.draining and self.port > 0

    def enter(self) -> None:
        with self._idle:
            self._inflight += 1

    def leave(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    @property
    def inflight(self) -> int:
        return self._inflight

    def drain(self, wait_s: float) -> int:
        """Take no new requests and wait (at most `wait_s`) for those in flight; returns how
        many were still running when the wait ended."""
        self.draining = True
        deadline = time.monotonic() + wait_s
        with self._idle:
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            return self._inflight

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
