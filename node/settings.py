"""What the owner may change from the dashboard while the agent runs, and how it is kept.

The editable sections (the local reservation, the planner's margins and floors, CapEx and OpEx,
the tariff) are checked exactly as the config file is, so an error names the key that is wrong.
An accepted change is stored in the store (it survives a restart and overrides the config file's
values for those keys), takes effect at once, and goes to the events log. The change before it
is kept too: should the newest stop validating (a later config file or version refuses it), the
agent starts on the one before, then on the config file's values, and says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from node.config import (
    CapexConfig,
    Config,
    LocalConfig,
    PlannerConfig,
    TariffConfig,
    build_section,
    check_config,
    shown,
    shown_key,
)
from node.errors import ConfigError
from node.store import Store

EDITABLE: dict[str, type] = {"local": LocalConfig, "planner": PlannerConfig,
                             "capex": CapexConfig, "tariff": TariffConfig}
PLANNER_KEYS = ("wear_per_gpu_hour", "margin_per_gpu_hour", "min_floor_per_gpu_hour")
TARIFF_KEYS = ("kind", "import_per_kwh", "export_per_kwh", "import_formula", "export_formula",
               "periods")
LISTS = {"local": ("schedule",), "capex": ("items", "opex"), "tariff": ("periods",)}
META_KEY = "settings"
PREVIOUS_KEY = "settings.previous"  # the last good settings before the newest
EVENT_VALUE_CHARS = 200
log = logging.getLogger("sunrig.settings")


def current(cfg: Config) -> dict[str, Any]:
    out = {name: _table(cfg, name) for name in EDITABLE}
    out["planner"] = {k: out["planner"][k] for k in PLANNER_KEYS}
    out["tariff"] = {k: out["tariff"][k] for k in TARIFF_KEYS}
    return out


def _table(cfg: Config, name: str) -> dict[str, Any]:
    """A section as JSON-ready data: lists of tables as lists of dicts, tuples as lists."""
    table = asdict(getattr(cfg, name))
    for key in LISTS.get(name, ()):
        table[key] = [{k: list(v) if isinstance(v, tuple) else v for k, v in dict(w).items()}
                      for w in table[key]]
    return table


def apply(cfg: Config, changes: Any) -> Config:
    """The config with these changes; ConfigError names the first key that is wrong. The whole
    change is checked before anything is returned, so a wrong key anywhere refuses all of it."""
    if not isinstance(changes, dict):
        raise ConfigError("settings", "", f"must be a JSON object, got {shown(changes)}")
    sections = {}
    for name, table in changes.items():
        if name not in EDITABLE:
            raise ConfigError("settings", shown_key(name),
                              f"cannot be changed here; editable: {', '.join(EDITABLE)}")
        if not isinstance(table, dict):
            raise ConfigError("settings", name, f"must be an object, got {shown(table)}")
        allowed = {"planner": PLANNER_KEYS, "tariff": TARIFF_KEYS}.get(name)
        if allowed and set(table) - set(allowed):
            bad = sorted(map(str, set(table) - set(allowed)))[0]
            raise ConfigError("settings", f"{name}.{shown_key(bad)}",
                              "cannot be changed while running")
        merged = {**_table(cfg, name), **table}
        sections[name] = build_section(EDITABLE[name], merged, name)
    new = replace(cfg, **sections)
    check_config(new)
    return new


def changes_between(before: Config, after: Config) -> list[str]:
    """Each changed key as 'section.key: old -> new', values cut short for the events log."""
    old, new = current(before), current(after)
    return [f"{sec}.{k}: {_cut(old[sec][k])} -> {_cut(v)}" for sec in new
            for k, v in new[sec].items() if old[sec][k] != v]


def _cut(value: Any) -> str:
    text = str(value)
    return text if len(text) <= EVENT_VALUE_CHARS else text[:EVENT_VALUE_CHARS] + "..."


def save(store: Store, before: Config, new: Config) -> None:
    """Keep `new` as the owner's settings (inside the caller's transaction, if any). The stored
    settings it replaces become the previous ones only if they still validate, so the fallback
    at a start is always the last good change."""
    text = json.dumps(current(new), allow_nan=False)  # strict JSON: nothing non-finite is kept
    with store.transaction() as db:
        stored = store.get_meta(META_KEY)
        if stored and stored != text and _valid(before, stored):
            store.set_meta(db, PREVIOUS_KEY, stored)
        store.set_meta(db, META_KEY, text)


def _valid(cfg: Config, stored: str) -> bool:
    try:
        apply(cfg, json.loads(stored))
    except (ConfigError, ValueError, RecursionError):
        return False
    return True


def load(store: Store, cfg: Config, now: datetime,
         usable: Callable[[Config], None] | None = None) -> Config:
    """The config file's values with the owner's last good saved settings on top.

    Saved settings that no longer validate, or that `usable` refuses (it raises ConfigError), are
    reported in the log and the events and passed over for the ones saved before them, then for
    the config file's values: a stored setting never keeps the agent from starting."""
    for key, which in ((META_KEY, "the saved dashboard settings"),
                       (PREVIOUS_KEY, "the dashboard settings saved before them")):
        saved = store.get_meta(key)
        if not saved:
            continue
        try:
            new = apply(cfg, json.loads(saved))
            if usable is not None:
                usable(new)
            return new
        except (ConfigError, ValueError, RecursionError) as exc:
            message = f"{which} no longer validate and are not used: {_cut(exc)}"
            log.warning("%s", message)
            store.add_event(now, "settings", message)
    return cfg
