"""Where the site's power goes right now: PV, battery and grid split over house, rig, battery
and grid, as an energy-flow card shows it.

Meters never balance exactly, so the split is a fill in a fixed order that never invents power:
PV serves the house and the rig first (in proportion to their draw), then charges the battery,
then exports; the battery's discharge serves what is left of the loads, then exports; the grid's
import serves the rest of the loads and any charging. Power that a reading cannot place (a
meter a few watts off) is left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("pv", "battery", "grid")
SINKS = ("house", "rig", "battery", "grid")


@dataclass(frozen=True)
class Flow:
    source: str  # pv, battery, grid
    sink: str  # house, rig, battery, grid
    power_w: float


def power_flows(pv_w: float | None, house_w: float | None, rig_w: float | None,
                battery_w: float | None, grid_w: float | None) -> list[Flow]:
    """Flows of at least 1 W, as the dashboard draws them. Battery positive while charging, grid
    positive while importing; a value the site does not report counts as 0 W."""
    flows = _fill(pv_w, house_w, rig_w, battery_w, grid_w)
    return [Flow(f.source, f.sink, round(f.power_w, 1)) for f in flows if f.power_w >= 1.0]


def supply_of(sink: str, pv_w: float | None, house_w: float | None, rig_w: float | None,
              battery_w: float | None, grid_w: float | None) -> dict[str, float]:
    """Where one sink's power comes from right now, by source (pv, battery, grid), in watts:
    the same fill as `power_flows`, unrounded, so the books and the dashboard never disagree."""
    out = dict.fromkeys(SOURCES, 0.0)
    for f in _fill(pv_w, house_w, rig_w, battery_w, grid_w):
        if f.sink == sink:
            out[f.source] += f.power_w
    return out


def shares_of(sink: str, pv_w: float | None, house_w: float | None, rig_w: float | None,
              battery_w: float | None, grid_w: float | None) -> dict[str, float]:
    """Each source's share of one sink's draw, summing to 1.

    Meters never balance exactly, and the sink's draw is measured a few seconds apart from the
    site's reading, so the power the fill places is scaled to the whole draw rather than the
    difference given to one source. A sink the reading places nothing for (no site reading) is
    settled at the grid connection, where an unmetered draw is paid for.
    """
    supply = supply_of(sink, pv_w, house_w, rig_w, battery_w, grid_w)
    placed = sum(supply.values())
    if placed <= 0:
        return {"grid": 1.0}
    shares = {source: w / placed for source, w in supply.items()}
    # filtered after the division: a denormal watt over a kilowatt is a share of exactly 0
    return {source: share for source, share in shares.items() if share > 0}


def _fill(pv_w: float | None, house_w: float | None, rig_w: float | None,
          battery_w: float | None, grid_w: float | None) -> list[Flow]:
    supply = {"pv": _pos(pv_w), "battery": _pos(-_val(battery_w)), "grid": _pos(grid_w)}
    demand = {"house": _pos(house_w), "rig": _pos(rig_w), "battery": _pos(battery_w),
              "grid": _pos(-_val(grid_w))}
    order = {"pv": (("house", "rig"), ("battery",), ("grid",)),
             "battery": (("house", "rig"), ("grid",)),
             "grid": (("house", "rig"), ("battery",))}
    flows: list[Flow] = []
    for source in SOURCES:
        for sinks in order[source]:
            flows += _share(source, sinks, supply, demand)
    return flows


def _share(source: str, sinks: tuple[str, ...], supply: dict[str, float],
           demand: dict[str, float]) -> list[Flow]:
    """Give what `source` has left to `sinks`, in proportion to what each still needs."""
    wanted = sum(demand[s] for s in sinks)
    given = min(supply[source], wanted)
    if given <= 0:
        return []
    supply[source] -= given
    out = []
    for sink in sinks:
        part = given * demand[sink] / wanted
        demand[sink] -= part
        out.append(Flow(source, sink, part))
    return out


def _val(w: float | None) -> float:
    if w is None or w != w:  # a missing reading, or NaN from a broken meter, places nothing
        return 0.0
    return float(w)


def _pos(w: float | None) -> float:
    return max(0.0, _val(w))
