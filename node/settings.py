"""What the owner may change from the dashboard while the agent runs, and how it is kept.

The editable sections (the local reservation and the planner's margins and floors) are checked
exactly as the config file is, so an error names the key that is wrong. An accepted change is
stored in the store (it survives a restart and overrides the config file's values for those
keys), takes effect at once, and goes to the events log.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from typing import Any

from node.config import (
    CapexConfig,
    Config,
    LocalConfig,
    PlannerConfig,
    TariffConfig,
    build_section,
    check_config,
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


def apply(cfg: Config, changes: dict[str, Any]) -> Config:
    """The config with these changes; ConfigError names the first key that is wrong."""
    if not isinstance(changes, dict):
        raise ConfigError("settings", "", "must be a JSON object")
    sections = {}
    for name, table in changes.items():
        if name not in EDITABLE:
            raise ConfigError("settings", name, f"cannot be changed here; editable: "
                              f"{', '.join(EDITABLE)}")
        if not isinstance(table, dict):
            raise ConfigError("settings", name, "must be an object")
        allowed = {"planner": PLANNER_KEYS, "tariff": TARIFF_KEYS}.get(name)
        if allowed and set(table) - set(allowed):
            bad = sorted(set(table) - set(allowed))[0]
            raise ConfigError("settings", f"{name}.{bad}", "cannot be changed while running")
        merged = {**_table(cfg, name), **table}
        sections[name] = build_section(EDITABLE[name], merged, name)
    new = replace(cfg, **sections)
    check_config(new)
    return new


def save(store: Store, cfg: Config) -> None:
    with store.transaction() as db:
        store.set_meta(db, META_KEY, json.dumps(current(cfg)))


def load(store: Store, cfg: Config) -> Config:
    """The config file's values with the owner's saved changes on top."""
    saved = store.get_meta(META_KEY)
    if not saved:
        return cfg
    try:
        return apply(cfg, json.loads(saved))
    except (ConfigError, ValueError) as exc:  # the new config file no longer accepts it
        log.warning("saved dashboard settings ignored, the config file's values apply: %s", exc)
        return cfg
