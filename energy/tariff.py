"""Tariffs: a fixed price, or day-ahead prices turned into retail prices by formulas from config.

A dynamic retail tariff is usually the day-ahead price plus fixed parts, e.g.
import = (spot + 0.02 + 0.1088) * 1.21 and export = spot - 0.01 (EUR/kWh). The formulas are
configuration, evaluated over one variable, `spot` (day-ahead price per kWh).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from energy.series import Series, load_series
from energy.types import PriceSlot

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def compile_formula(text: str) -> Callable[[float], float]:
    """Turn an arithmetic formula over `spot` into a function; ValueError says what is wrong."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {text!r}") from None
    _check(tree.body, text)

    def evaluate(spot: float) -> float:
        try:
            return _eval(tree.body, spot)
        except ZeroDivisionError:
            raise ValueError(f"{text!r} divides by zero at spot = {spot}") from None

    evaluate(0.1)  # division by a literal zero surfaces now, not in the middle of a night
    return evaluate


def _check(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, text)
    elif not (_is_number(node) or (isinstance(node, ast.Name) and node.id == "spot")):
        raise ValueError(f"only numbers, 'spot', + - * / and parentheses are allowed "
                         f"in {text!r}")


def _is_number(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
            and not isinstance(node.value, bool))


def _eval(node: ast.AST, spot: float) -> float:
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, spot), _eval(node.right, spot))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, spot))
    if isinstance(node, ast.Name):
        return spot
    return float(node.value)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FixedTariff:
    """One import and one export price, always; slots are hourly for the planner's benefit."""

    import_per_kwh: float
    export_per_kwh: float

    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        first = start.replace(minute=0, second=0, microsecond=0)
        hours = int((end - first).total_seconds() // 3600) + 1
        out = []
        for h in range(hours):
            s = first + timedelta(hours=h)
            if s < end:
                out.append(PriceSlot(s, s + timedelta(hours=1), self.import_per_kwh,
                                     self.export_per_kwh))
        return out


class DayAheadTariff:
    """Day-ahead prices (per MWh) from a CSV file, turned into retail prices by the formulas.

    With `replay`, a recorded year stands for any year (by whole weeks), for simulations.
    """

    def __init__(self, source: str, import_formula: str, export_formula: str,
                 replay: bool = False, ts_column: str = "ts_utc",
                 price_column: str = "eur_per_mwh"):
        self._series: Series = load_series(source, ts_column, [price_column])
        self._prices = self._series.columns[price_column]
        self._import = compile_formula(import_formula)
        self._export = compile_formula(export_formula)
        self._replay = replay

    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        step = self._series.step
        out: list[PriceSlot] = []
        ts = start
        while ts < end:
            i = self._series.index_at(ts, self._replay)
            if i is None:
                break  # beyond what is known: the caller decides what unknown prices mean
            mapped = self._series.map_time(ts, self._replay)
            assert mapped is not None
            slot_start = ts - (mapped - self._series.ts[i])
            spot_mwh = self._prices[i]
            if spot_mwh is not None:
                spot = spot_mwh / 1000.0
                out.append(PriceSlot(slot_start, slot_start + step, round(self._import(spot), 6),
                                     round(self._export(spot), 6)))
            ts = slot_start + step
        return out


@dataclass(frozen=True)
class TouWindow:
    weekdays: frozenset[int]  # 0 = Monday
    start: str  # "HH:MM", local time
    end: str
    import_per_kwh: float
    export_per_kwh: float


class TimeOfUseTariff:
    """Prices by local time of day and weekday; 15-minute slots so boundaries fall on them."""

    STEP = timedelta(minutes=15)

    def __init__(self, base_import: float, base_export: float, windows: list[TouWindow],
                 tz: ZoneInfo):
        self.base = (base_import, base_export)
        self.windows, self.tz = windows, tz

    def price_at(self, ts: datetime) -> tuple[float, float]:
        local = ts.astimezone(self.tz)
        hhmm = local.strftime("%H:%M")
        for w in self.windows:  # the first matching window wins, as listed
            if local.weekday() in w.weekdays and w.start <= hhmm < w.end:
                return w.import_per_kwh, w.export_per_kwh
        return self.base

    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        ts = start.replace(second=0, microsecond=0)
        ts -= timedelta(minutes=ts.minute % 15)
        out = []
        while ts < end:
            imp, exp = self.price_at(ts)
            out.append(PriceSlot(ts, ts + self.STEP, imp, exp))
            ts += self.STEP
        return out
