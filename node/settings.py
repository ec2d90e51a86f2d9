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

from node.config import Config, LocalConfig, PlannerConfig, build_section, check_config
from node.errors import ConfigError
from node.store import Store

EDITABLE: dict[str, type] = {"local": LocalConfig, "planner": PlannerConfig}
PLANNER_KEYS = ("wear_per_gpu_hour", "margin_per_gpu_hour", "min_floor_per_gpu_hour")
META_KEY = "settings"
log = logging.getLogger("sunrig.settings")


def current(cfg: Config) -> dict[str, Any]:
    local = asdict(cfg.local)
    local["schedule"] = [dict(w) for w in local["schedule"]]
    planner = {k: getattr(cfg.planner, k) for k in PLANNER_KEYS}
    return {"local": local, "planner": planner}


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
        if name == "planner" and set(table) - set(PLANNER_KEYS):
            bad = sorted(set(table) - set(PLANNER_KEYS))[0]
            raise ConfigError("settings", f"planner.{bad}", "cannot be changed while running")
        base = asdict(getattr(cfg, name))
        if name == "local":
            base["schedule"] = [dict(w) for w in base["schedule"]]
        merged = {**base, **table}
        if name == "local":  # lists come as JSON arrays; the config wants them as TOML does
            merged["schedule"] = [{**w, "days": list(w.get("days", []))} if isinstance(w, dict)
                                  else w for w in merged.get("schedule") or []]
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
