"""Files sunrig reads but did not write: data files, tokens, CA certificates and kept state.

One rule for all of them: whatever a path holds (nothing, a folder, a FIFO, a device, a huge or
binary file) is a FileProblem naming it, never a traceback and never a read that blocks or does
not end. Callers turn the problem into their own error (a ConfigError naming the key, a
SeriesError, a state file set aside). It lives in the lowest layer, beside `redact`, so that
energy, the market adapters and the node share it; it imports nothing of sunrig.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

KIB = 1 << 10
MIB = 1 << 20
# a PEM bundle of every public root CA is about 300 KiB; a private CA is a few KiB
MAX_CA_FILE_BYTES = 4 * MIB
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
# a market's state file holds its leases: a few KiB, a few MiB after years of short rentals
MAX_STATE_BYTES = 64 * MIB
MAX_SET_ASIDE = 100


class FileProblem(ValueError):
    """A file that cannot be used as asked; `problem` says why, `path` which file."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


def read_bytes(path: str | Path, max_bytes: int) -> bytes:
    """At most `max_bytes` of a regular file; more is a FileProblem, as is anything else."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; it has no
        # effect on the regular file that is read
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileProblem(path, "no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise FileProblem(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FileProblem(path, "is a folder, not a file")
        if not stat.S_ISREG(mode):  # a FIFO or a socket would block, a device never end
            raise FileProblem(path, "is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise FileProblem(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FileProblem(path, f"is larger than {size_text(max_bytes)}")
    return data


def decode_utf8(data: bytes, path: str | Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(path, f"is not UTF-8 text (byte {exc.start} is not)") from None


def read_text(path: str | Path, max_bytes: int) -> str:
    """A regular file of at most `max_bytes` of UTF-8 text."""
    return decode_utf8(read_bytes(path, max_bytes), path)


def size_text(n_bytes: int) -> str:
    return f"{n_bytes // MIB} MiB" if n_bytes >= MIB else f"{n_bytes // KIB} KiB"


def tls_client_context(ca_file: str | Path) -> ssl.SSLContext:
    """A TLS client context that trusts only the certificates of a PEM file, and checks the
    server's host name.

    The file is read once, here, so a CA file that is missing, binary, a folder or no
    certificate at all is a FileProblem when sunrig starts, not an ssl error at a connection.
    """
    text = read_text(ca_file, MAX_CA_FILE_BYTES)
    if PEM_CERTIFICATE not in text:
        raise FileProblem(ca_file, f"is not a PEM CA certificate (no '{PEM_CERTIFICATE}' line)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # host names checked; no system CAs
    try:
        context.load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError, TypeError):  # TypeError: the text is not ASCII
        raise FileProblem(ca_file, "holds a PEM certificate that cannot be read") from None
    return context


# --- state files: documents sunrig keeps for itself between runs ---------------------------------

def load_state(path: Path, parse: Callable[[Any], T], what: str) -> T | None:
    """The document kept in a state file as `parse` makes it, or None when there is none.

    A file that cannot be read, is not JSON, or holds a document `parse` refuses (ValueError,
    TypeError, KeyError) is kept aside as NAME.corrupt and None returned, with one log line: a
    corrupt state file never stops the agent, and what it held is not lost. Only a file that
    cannot be moved aside is a FileProblem, since starting fresh would then overwrite it.
    """
    try:
        os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        pass  # the read below says what is wrong
    try:
        return parse(json.loads(read_text(path, MAX_STATE_BYTES)))
    except FileProblem as exc:
        why = exc.problem
    except RecursionError:  # the parser recurses once per level of nesting
        why = "nested too deeply"
    except (ValueError, TypeError, KeyError, OverflowError) as exc:  # not JSON, or wrong inside
        why = shown(str(exc), 200)
    kept = set_aside(path, why)
    log.warning("%s: state file %s is corrupt (%s); kept as %s, starting fresh", what, path,
                why, kept.name)
    return None


def set_aside(path: Path, why: str) -> Path:
    """Rename a corrupt file to NAME.corrupt (NAME.corrupt.1, ... when taken: an older corrupt
    copy is never overwritten); returns its new path."""
    for n in range(MAX_SET_ASIDE):
        kept = path.with_name(f"{path.name}.corrupt" + (f".{n}" if n else ""))
        if os.path.lexists(kept):
            continue
        try:
            os.rename(path, kept)
        except OSError as exc:
            raise FileProblem(path, f"is corrupt ({why}) and cannot be moved aside "
                              f"({exc.strerror}); move it away to start fresh") from None
        return kept
    raise FileProblem(path, f"is corrupt ({why}), and {MAX_SET_ASIDE} corrupt copies are kept "
                      "already; remove them to start fresh")


def shown(text: str, most: int = 60) -> str:
    return text[:most] + ("..." if len(text) > most else "")


def text_field(doc: dict, key: str, most_chars: int = 200) -> str:
    value = doc[key]
    if not isinstance(value, str) or not 0 < len(value) <= most_chars:
        raise ValueError(f"{key} is not a text of 1 to {most_chars} characters")
    return value


def whole_field(doc: dict, key: str, lo: int, hi: int) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{key} is not a whole number from {lo} to {hi}")
    return value


def number_field(doc: dict, key: str, lo: float, hi: float) -> float:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not lo <= value <= hi:  # nan and inf fail the comparison
        raise ValueError(f"{key} is not a number from {lo:g} to {hi:g}")
    return value


def time_field(doc: dict, key: str) -> datetime:
    """An ISO 8601 time with its offset, as state files keep times."""
    value = doc[key]
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(f"{key} is not an ISO 8601 time with a UTC offset")
    return when
