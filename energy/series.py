"""Regular time series loaded from CSV files (plain or gzip), with optional replay.

Replay maps any timestamp onto the recorded span by whole weeks, so a recorded year can drive a
simulation at any date while keeping weekday patterns in load and prices.
"""

from __future__ import annotations

import csv
import io
import math
import zlib
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

from energy.files import MIB, FileProblem, decode_utf8, read_bytes, size_text

EMBEDDED_PREFIX = "embedded:"
REPLAY_PERIOD = timedelta(days=364)  # 52 whole weeks
# a year of one-minute rows with a few columns is about 30 MiB of CSV
MAX_SERIES_BYTES = 128 * MIB
# far beyond any site's power in W (a 10 MW connection is 1e7) and any price per MWh (markets
# cap theirs at a few thousand): only garbage lies outside
MAX_ABS_VALUE = 1e9
SHOWN_CHARS = 40


class SeriesError(ValueError):
    """A series file is missing, unreadable or malformed; the message names file and line."""


def parse_ts(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        utc = ts.astimezone(UTC) if ts.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: an offset beyond year 1 or 9999
        raise ValueError(f"timestamp {_shown(text)} is not an ISO 8601 date and time") from None
    if utc is None:
        raise ValueError(f"timestamp {_shown(text)} has no timezone")
    return utc


def _shown(text: str) -> str:
    return repr(text[:SHOWN_CHARS]) + ("..." if len(text) > SHOWN_CHARS else "")


def _open_text(source: str) -> io.TextIOBase:
    """The text of a series file, or of one shipped with sunrig ('embedded:NAME'); any file
    that cannot be read as UTF-8 text (gzip-compressed when named .gz) is a SeriesError."""
    try:
        raw = _embedded(source) if source.startswith(EMBEDDED_PREFIX) else \
            read_bytes(source, MAX_SERIES_BYTES)
        if source.endswith(".gz"):
            raw = _gunzip(raw, source)
        text = decode_utf8(raw, source)
    except FileProblem as exc:
        raise SeriesError(str(exc)) from None
    # a spreadsheet's CSV export may begin with a byte order mark, which is no part of a name
    return io.StringIO(text.removeprefix("\ufeff"), newline="")


def _embedded(source: str) -> bytes:
    name = source[len(EMBEDDED_PREFIX):]
    data = resources.files("energy").joinpath("data")
    shipped = sorted(p.name for p in data.iterdir() if p.is_file() and p.name != "README.md")
    if name not in shipped:  # a name, never a path out of the package
        raise FileProblem(source, f"no such embedded file; shipped: {', '.join(shipped)}")
    return data.joinpath(name).read_bytes()


def _gunzip(raw: bytes, source: str) -> bytes:
    """Every gzip member of `raw`, stopping at MAX_SERIES_BYTES of text: a small file that
    would unpack to gigabytes is refused before it fills the memory."""
    out: list[bytes] = []
    total, rest = 0, raw
    while rest:
        unpack = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # 16: a gzip header
        try:
            chunk = unpack.decompress(rest, MAX_SERIES_BYTES + 1 - total)
        except zlib.error:
            raise FileProblem(source, "is not a valid gzip file") from None
        total += len(chunk)
        if total > MAX_SERIES_BYTES or unpack.unconsumed_tail:
            raise FileProblem(source, f"unpacks to more than {size_text(MAX_SERIES_BYTES)}")
        if not unpack.eof:
            raise FileProblem(source, "is a gzip file cut short")
        out.append(chunk)
        rest = unpack.unused_data
    return b"".join(out)


@dataclass(frozen=True)
class Series:
    """Columns of floats (None for gaps) on sorted UTC timestamps with a fixed step."""

    source: str
    ts: tuple[datetime, ...]
    columns: dict[str, tuple[float | None, ...]]
    step: timedelta

    @property
    def start(self) -> datetime:
        return self.ts[0]

    @property
    def end(self) -> datetime:
        return self.ts[-1] + self.step

    def map_time(self, ts: datetime, replay: bool) -> datetime | None:
        """The recorded instant that stands for `ts`, or None when it lies outside the record."""
        if replay:
            weeks = math.floor((ts - self.start) / REPLAY_PERIOD)
            ts = ts - weeks * REPLAY_PERIOD
        return ts if self.start <= ts < self.end else None

    def index_at(self, ts: datetime, replay: bool) -> int | None:
        mapped = self.map_time(ts, replay)
        if mapped is None:
            return None
        return bisect_right(self.ts, mapped) - 1

    def value(self, column: str, ts: datetime, replay: bool) -> float | None:
        i = self.index_at(ts, replay)
        return None if i is None else self.columns[column][i]


def load_series(source: str, ts_column: str, columns: list[str]) -> Series:
    """Load a CSV whose rows are `ts_column` plus numeric `columns`; empty cells become None."""
    stamps, values = _read_rows(source, ts_column, columns)
    if len(stamps) < 2:
        raise SeriesError(f"{source}: needs at least two rows")
    if any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
        raise SeriesError(f"{source}: timestamps must be strictly increasing")
    step = stamps[1] - stamps[0]
    return Series(source, tuple(stamps), {c: tuple(v) for c, v in values.items()}, step)


def _read_rows(source: str, ts_column: str, columns: list[str]
               ) -> tuple[list[datetime], dict[str, list[float | None]]]:
    reader = csv.DictReader(_open_text(source))
    stamps: list[datetime] = []
    values: dict[str, list[float | None]] = {c: [] for c in columns}
    try:
        missing = [c for c in [ts_column, *columns] if c not in (reader.fieldnames or [])]
        if missing:
            raise SeriesError(f"{source}: missing column(s) {', '.join(missing)}")
        for row in reader:
            try:
                stamps.append(parse_ts(row[ts_column] or ""))
            except ValueError as exc:
                raise SeriesError(f"{source}, line {reader.line_num}: {exc}") from None
            for c in columns:
                values[c].append(_cell(row[c], source, reader.line_num, c))
    except csv.Error as exc:  # a NUL byte, a field longer than csv's limit, a broken quote
        raise SeriesError(f"{source}, line {reader.line_num}: not CSV: {exc}") from None
    return stamps, values


def _cell(text: str | None, source: str, line: int, column: str) -> float | None:
    """An empty cell is a gap (None). Anything else must be a finite number of a plausible
    size: 'nan', 'inf' and 1e308 are garbage in the file, not gaps, and are refused where they
    are rather than let through to the planner or quietly turned into gaps."""
    cell = (text or "").strip()  # a short row has no text for its last cells: gaps
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise SeriesError(f"{source}, line {line}, column {column}: {_shown(cell)} is not a "
                          "number") from None
    if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        raise SeriesError(f"{source}, line {line}, column {column}: {_shown(cell)} is not a "
                          f"finite number within +-{MAX_ABS_VALUE:g}; leave the cell empty for "
                          "a gap")
    return value
