"""The rules for the names and keys local inference is given: one rule per kind, used by the
config, the CLI and the gateway alike."""

from __future__ import annotations

import re

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
KEY_PREFIX = "sk-sunrig-"
# 32 random bytes in URL-safe base64 without padding: 43 characters
API_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{43}")
SHOWN_CHARS = 40


def _shown(value: object) -> str:
    if isinstance(value, str):
        return repr(value[:SHOWN_CHARS]) + ("..." if len(value) > SHOWN_CHARS else "")
    return f"a {type(value).__name__}"


def check_model_name(value: object) -> str:
    """A model name as servers and clients spell it (`llama3.1:8b`, `Qwen/Qwen2.5-7B`)."""
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a model name: 1 to 128 letters, digits or "
                         "._:/@+- starting with a letter or digit")
    return value


def check_user_name(value: object) -> str:
    """A user's name: what the store, the metrics' labels and the dashboard show."""
    if not isinstance(value, str) or not USER_NAME.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a user name: 1 to 64 letters, digits or ._@- "
                         "starting with a letter or digit")
    return value


def is_api_key(value: str) -> bool:
    """Whether a presented key has the shape of one this gateway hands out: anything else is
    refused before it is hashed or looked up."""
    return bool(API_KEY.fullmatch(value))
