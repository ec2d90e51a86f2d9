"""What each request used: tokens in and out, latency and status, never any text.

Tokens come from the answer's own `usage`. A stream is asked for usage in its last chunk
(`stream_options.include_usage`); where a server ignores that (llama-cpp-python's server 0.3.x
does), the streamed text and the prompt are counted with that server's own tokenizer, and the
gateway adds the usage chunk for a client that asked for one. Where even that fails, the row
says `unmetered` and a warning is logged: usage is never silently zero.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from statistics import quantiles
from typing import Any

log = logging.getLogger("sunrig.inference")

# how a row's tokens were found
REPORTED = "reported"  # the server's usage
COUNTED = "counted"  # the server's tokenizer over the text that passed through
UNMETERED = "unmetered"  # neither: a failure, logged
NONE = "none"  # no answer to meter (the server failed or was not ready)


@dataclass(frozen=True)
class Usage:
    user: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    endpoint: str = "chat"
    stream: bool = False
    status: int = 200
    metered: str = REPORTED
    queue_ms: float = 0.0  # waited at the gateway for a free slot of the server


def usage_of(answer: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens of an answer's `usage`, or None where it has none usable."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if not (_count(prompt) and _count(completion)):
        return None
    return prompt, completion


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 40


def prompt_text(endpoint: str, body: dict) -> str:
    """The prompt as text, to count its tokens where a stream reports none: a completion's
    prompt as given; a chat's messages each as `role: content` (the chat template's own
    tokens around them are not counted, so this errs low by a few tokens per message)."""
    if endpoint == "completions":
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else " ".join(
            p for p in prompt if isinstance(p, str)) if isinstance(prompt, list) else ""
    parts = []
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            parts.append(f"{message.get('role', '')}: {_content_text(message.get('content'))}")
    return "\n".join(parts)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content
                        if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass
class StreamMeter:
    """Reads a stream's events as they pass, parsing as little as it can: only an event that
    names `usage` is parsed on the way (it may be the usage chunk); the others are kept as they
    came and read for their text only if the stream ends with no usage from the server.
    `forward` says whether an event goes on to the client: a usage chunk the client did not ask
    for does not."""

    endpoint: str
    client_wants_usage: bool
    usage: tuple[int, int] | None = None
    last: dict | None = None
    _events: list[bytes] = field(default_factory=list)

    def forward(self, data: bytes) -> bool:
        if b'"usage"' not in data:
            self._events.append(data)
            return True
        chunk = _parsed(data)
        if chunk is None:
            return True
        self.last = chunk
        found = usage_of(chunk)
        if found is not None:
            self.usage = found
        self._events.append(data)
        usage_only = found is not None and not chunk.get("choices")
        return self.client_wants_usage or not usage_only

    @property
    def text(self) -> list[str]:
        """The text streamed, read from the kept events (where the server sent no usage)."""
        pieces = []
        for data in self._events:
            chunk = _parsed(data)
            if chunk is None:
                continue
            self.last = chunk
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else []:
                piece = _choice_text(choice, self.endpoint)
                if piece:
                    pieces.append(piece)
        return pieces

    def usage_chunk(self, usage: tuple[int, int]) -> bytes:
        """The chunk a server sends last when asked for usage, for a server that did not."""
        last = self.last or {}
        chunk = {"id": last.get("id", ""), "object": last.get(
            "object", "chat.completion.chunk" if self.endpoint == "chat" else "text_completion"),
                 "created": last.get("created", 0), "model": last.get("model", ""),
                 "choices": [], "usage": {"prompt_tokens": usage[0],
                                          "completion_tokens": usage[1],
                                          "total_tokens": usage[0] + usage[1]}}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _parsed(data: bytes) -> dict | None:
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    return chunk if isinstance(chunk, dict) else None


def _choice_text(choice: Any, endpoint: str) -> str:
    if not isinstance(choice, dict):
        return ""
    if endpoint == "chat":
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
    else:
        content = choice.get("text")
    return content if isinstance(content, str) else ""


def counted_usage(backend: Any, prompt: str, completion: str) -> tuple[int, int] | None:
    """Both sides counted by the server's tokenizer; None (and a warning) if it cannot."""
    try:
        return backend.count_prompt_tokens(prompt), backend.count_tokens(completion)
    except (OSError, ValueError) as exc:
        log.warning("cannot count a stream's tokens with the server's tokenizer: %s", exc)
        return None


def latency_percentiles(values: list[float]) -> dict[str, float | None]:
    """p50 and p95 of request latencies (inclusive method: never beyond what was measured)."""
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    if len(values) == 1:
        return {"p50": round(values[0], 3), "p95": round(values[0], 3), "n": 1}
    cuts = quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p95": round(cuts[94], 3), "n": len(values)}
