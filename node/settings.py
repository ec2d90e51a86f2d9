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
    MAX_LIST_ITEMS,
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
from node.storage.store import Store

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


class SettingsErrors(ConfigError):
    """Every wrong key of one change, so the page can show each beside its field. The first
    is this error's own key and problem, as a single ConfigError would name it."""

    def __init__(self, errors: list[ConfigError]):
        first = errors[0]
        super().__init__(first.file, first.key, first.problem)
        self.errors = errors
        if len(errors) > 1:  # a log line or a CLI message stays short
            self.args = (f"{first} (and {len(errors) - 1} more)",)


def apply(cfg: Config, changes: Any) -> Config:
    """The config with these changes. A wrong change raises ConfigError; where several keys are
    wrong it is a SettingsErrors that names each of them. The whole change is checked before
    anything is returned, so a wrong key anywhere refuses all of it."""
    if not isinstance(changes, dict):
        raise ConfigError("settings", "", f"must be a JSON object, got {shown(changes)}")
    errors = [e for name, table in changes.items() for e in _section_errors(cfg, name, table)]
    if errors:
        raise errors[0] if len(errors) == 1 else SettingsErrors(errors)
    new = replace(cfg, **{name: _checked(cfg, name, table) for name, table in changes.items()})
    check_config(new)  # the sections together, as the config file is checked
    return new


def errors_of(exc: ConfigError) -> list[ConfigError]:
    return list(getattr(exc, "errors", [exc]))


def error_answer(exc: ConfigError) -> dict[str, Any]:
    """The API's answer to a refused change: the first error as `error` and `field` (as
    always), and every one of them in `errors`, each naming its field."""
    return {"ok": False, "error": exc.problem, "field": exc.key,
            "errors": [{"field": e.key, "error": e.problem} for e in errors_of(exc)]}


def _section_errors(cfg: Config, name: Any, table: Any) -> list[ConfigError]:
    """Every wrong key of one section: each key is checked on its own against the current
    values of the others, then the section as a whole (for rules that span its keys)."""
    if name not in EDITABLE:
        return [ConfigError("settings", shown_key(name),
                            f"cannot be changed here; editable: {', '.join(EDITABLE)}")]
    if not isinstance(table, dict):
        return [ConfigError("settings", name, f"must be an object, got {shown(table)}")]
    allowed = {"planner": PLANNER_KEYS, "tariff": TARIFF_KEYS}.get(name)
    fixed = sorted(map(str, set(table) - set(allowed))) if allowed else []
    errors = [ConfigError("settings", f"{name}.{shown_key(key)}",
                          "cannot be changed while running") for key in fixed]
    for key, value in table.items():
        if key not in fixed:
            errors += _key_errors(cfg, name, key, value)
    if not errors:
        try:
            _checked(cfg, name, table)
        except ConfigError as exc:
            errors.append(exc)
    return errors


def _key_errors(cfg: Config, name: str, key: str, value: Any) -> list[ConfigError]:
    """One key's errors; for a list (schedule windows, CapEx items), one per wrong item."""
    try:
        _checked(cfg, name, {key: value})
        return []
    except ConfigError as whole:
        if key not in LISTS.get(name, ()) or not isinstance(value, list) \
                or len(value) > MAX_LIST_ITEMS:
            return [whole]
        first = f"{name}.{key}[0]"
        items = []
        for i, item in enumerate(value):
            try:
                _checked(cfg, name, {key: [item]})
            except ConfigError as exc:  # found as item 0 of a list of one: named as item i
                where = f"{name}.{key}[{i}]" + exc.key[len(first):] \
                    if exc.key.startswith(first) else exc.key
                items.append(ConfigError(exc.file, where, exc.problem))
        return items or [whole]  # each item is right alone: the rule spans items (names)


def _checked(cfg: Config, name: str, table: dict) -> Any:
    """The section with these keys changed, checked on its own and with the rest of `cfg`."""
    section = build_section(EDITABLE[name], {**_table(cfg, name), **table}, name)
    check_config(replace(cfg, **{name: section}))
    return section


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
