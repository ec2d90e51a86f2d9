"""A simulated inference server for the demo, labelled as such in every answer.

It speaks the same OpenAI-compatible API as a real server (plain and streamed answers with
usage, embeddings, a tokenizer), so the demo's gateway, metering and books run the code a real
rig runs, without loading a model. Its tokens are words and punctuation: a stand-in count.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = ("This answer is simulated: the sunrig demo runs no model. On a rig, a configured "
          "server on the local GPUs answers here.")
TOKEN = re.compile(r"\w+|[^\w\s]")
EMBEDDING_DIM = 8


def tokens_of(text: str) -> list[str]:
    return TOKEN.findall(text)


class SimulatedServer:
    def __init__(self, model: str, delay_per_token_s: float = 0.01, port: int = 0):
        self.model = model
        self.delay_per_token_s = delay_per_token_s
        handler = type("Handler", (_Handler,), {"sim": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> SimulatedServer:
        threading.Thread(target=self.server.serve_forever, name="simulated-llm",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    sim: SimulatedServer
    protocol_version = "HTTP/1.1"
    # headers and body leave as separate writes: Nagle would hold the body for the client's
    # delayed ACK (40 ms) on a kept-alive connection
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path in ("/health", "/v1/models"):
            self._json({"object": "list", "data": [{"id": self.sim.model, "object": "model",
                                                    "owned_by": "sunrig (simulated)"}]})
        else:
            self._json({"error": {"message": "not found"}}, 404)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/tokenize":
            self._json({"tokens": list(range(len(tokens_of(str(body.get("input", ""))))))})
        elif self.path == "/v1/embeddings":
            self._embeddings(body)
        elif self.path in ("/v1/chat/completions", "/v1/completions"):
            chat = self.path == "/v1/chat/completions"
            prompt = len(tokens_of(json.dumps(body.get("messages" if chat else "prompt"))))
            if body.get("stream"):
                self._stream(chat, prompt, body)
            else:
                self._json(_answer(self.sim.model, chat, prompt))
        else:
            self._json({"error": {"message": "not found"}}, 404)

    def _embeddings(self, body: dict) -> None:
        items = body.get("input")
        items = items if isinstance(items, list) else [items]
        n = sum(len(tokens_of(str(i))) for i in items)
        data = [{"object": "embedding", "index": i,
                 "embedding": [((hash(str(x)) >> k) % 1000) / 1000.0
                               for k in range(EMBEDDING_DIM)]} for i, x in enumerate(items)]
        self._json({"object": "list", "model": self.sim.model, "data": data,
                    "usage": {"prompt_tokens": n, "total_tokens": n}})

    def _stream(self, chat: bool, prompt: int, body: dict) -> None:
        # chunked on a kept-alive connection, as llama.cpp's server streams (cpp-httplib's
        # set_chunked_content_provider)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = re.findall(r"\S+\s*", ANSWER)
        base = {"id": "sim-stream", "created": int(time.time()), "model": self.sim.model,
                "object": "chat.completion.chunk" if chat else "text_completion"}
        for piece in pieces:
            choice = {"index": 0, "delta": {"content": piece}} if chat else {
                "index": 0, "text": piece}
            self._event({**base, "choices": [choice]})
            time.sleep(self.sim.delay_per_token_s)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            done = len(tokens_of(ANSWER))
            self._event({**base, "choices": [], "usage": {
                "prompt_tokens": prompt, "completion_tokens": done,
                "total_tokens": prompt + done}})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _event(self, chunk: dict) -> None:
        self._chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _json(self, value: dict, status: int = 200) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _answer(model: str, chat: bool, prompt: int) -> dict:
    done = len(tokens_of(ANSWER))
    choice = ({"index": 0, "message": {"role": "assistant", "content": ANSWER},
               "finish_reason": "stop"} if chat else
              {"index": 0, "text": ANSWER, "finish_reason": "stop"})
    return {"id": "sim", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice],
            "usage": {"prompt_tokens": prompt, "completion_tokens": done,
                      "total_tokens": prompt + done}}


def main(argv: list[str] | None = None) -> None:
    """`python -m node.inference.simulated --port N`: the simulated server as a process of its
    own, as a configured server runs (the gateway's benchmark measures against it)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="sunrig-simulated")
    parser.add_argument("--delay-per-token-s", type=float, default=0.01)
    args = parser.parse_args(argv)
    SimulatedServer(args.model, args.delay_per_token_s, args.port).server.serve_forever()


if __name__ == "__main__":
    main()
