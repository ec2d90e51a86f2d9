"""Regular time series loaded from CSV files (plain or gzip), with optional replay.

Replay maps any timestamp onto the recorded span by whole weeks, so a recorded year can drive a
simulation at any date while keeping weekday patterns in load and prices.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"
REPLAY_PERIOD = timedelta(days=364)  # 52 whole weeks


class SeriesError(ValueError):
    """A series file is missing, unreadable or malformed; the message names file and line."""


def parse_ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return ts.astimezone(UTC)


def _open_text(source: str) -> io.TextIOBase:
    if source.startswith(EMBEDDED_PREFIX):
        name = source[len(EMBEDDED_PREFIX):]
        raw = resources.files("energy").joinpath("data", name).read_bytes()
    else:
        path = Path(source)
        if not path.is_file():
            raise SeriesError(f"{source}: no such file")
        raw = path.read_bytes()
    if source.endswith(".gz"):
        raw = gzip.decompress(raw)
    return io.StringIO(raw.decode("utf-8"))


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
    reader = csv.DictReader(_open_text(source))
    missing = [c for c in [ts_column, *columns] if c not in (reader.fieldnames or [])]
    if missing:
        raise SeriesError(f"{source}: missing column(s) {', '.join(missing)}")
    stamps: list[datetime] = []
    values: dict[str, list[float | None]] = {c: [] for c in columns}
    for line, row in enumerate(reader, start=2):
        try:
            stamps.append(parse_ts(row[ts_column]))
            for c in columns:
                cell = (row[c] or "").strip()
                values[c].append(float(cell) if cell else None)
        except ValueError as exc:
            raise SeriesError(f"{source}, line {line}: {exc}") from None
    if len(stamps) < 2:
        raise SeriesError(f"{source}: needs at least two rows")
    if any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
        raise SeriesError(f"{source}: timestamps must be strictly increasing")
    step = stamps[1] - stamps[0]
    return Series(source, tuple(stamps), {c: tuple(v) for c, v in values.items()}, step)
