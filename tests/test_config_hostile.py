"""Hostile input to the configuration: absurd numbers, huge or broken text, lists where values
belong, and files that are not config files. Each is a ConfigError naming what was wrong."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from node.cli.commands import main
from node.config import (
    MAX_CONFIG_BYTES,
    MAX_LIST_ITEMS,
    MAX_PATH_CHARS,
    MAX_TEXT_CHARS,
    CapexItem,
    Config,
    InferencePriceConfig,
    InferenceServerConfig,
    MqttMappingConfig,
    OpexItem,
    ReservationWindow,
    TouPeriod,
    parse_config,
)
from node.errors import ConfigError

NON_FINITE_AND_HUGE = [math.nan, math.inf, -math.inf, 1e308, -1e308]
# the smallest valid item of each list of tables, so one field at a time can be made wrong
ITEM = {
    ReservationWindow: {"days": ["mon"], "start": "08:00", "end": "18:00", "gpus": 1},
    TouPeriod: {"days": ["mon"], "start": "08:00", "end": "18:00", "import_per_kwh": 0.3,
                "export_per_kwh": 0.1},
    MqttMappingConfig: {"topic": "meter/power", "field": "pv_w"},
    CapexItem: {"name": "HGX", "amount": 1000, "date": "2026-01-15"},
    OpexItem: {"name": "Fibre", "amount_per_month": 80, "since": "2026-01-15"},
    InferenceServerConfig: {"model": "llama3.1:8b"},
    InferencePriceConfig: {"model": "llama3.1:8b", "input_per_million_tokens": 0.1,
                           "output_per_million_tokens": 0.4},
}


def walk(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, Any, type]]:
    """Every leaf field below `cls`: (dotted key, type, metadata, owning dataclass); a list of
    tables is entered through its first item."""
    out = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        inner = get_args(tp)[0] if get_origin(tp) is tuple else None
        if is_dataclass(tp):
            out += walk(tp, key + ".")
        elif inner is not None and is_dataclass(inner):
            out += walk(inner, key + "[0].")
        else:
            out.append((key, tp, f.metadata, cls))
    return out


def numeric(tp: Any) -> bool:
    """An int or float field, or a list of them; a Literal is bounded by its choices."""
    if get_origin(tp) is tuple:
        tp = get_args(tp)[0]
    return tp in (int, float)


NUMERIC = [(key, tp, meta) for key, tp, meta, _ in walk() if numeric(tp)]
TEXTS = [(key, tp, meta) for key, tp, meta, _ in walk()
         if tp is str or (get_origin(tp) is tuple and get_args(tp)[0] is str)]


def table_with(key: str, value: Any) -> dict:
    """A config table whose only wrong value is `value` at `key` ('a.b[0].c' style), with the
    required fields of the list item it sits in filled with valid values."""
    table: dict = {}
    node, cls = table, Config
    parts = key.split(".")
    for part in parts[:-1]:
        name = part.removesuffix("[0]")
        tp = get_type_hints(cls)[name]
        if part.endswith("[0]"):
            cls = get_args(tp)[0]
            item = dict(ITEM[cls])
            node[name] = [item]
            node = item
        else:
            cls = tp
            node = node.setdefault(name, {})
    last = parts[-1]
    if last.endswith("[0]"):
        node[last.removesuffix("[0]")] = [value]
    else:
        node[last] = value
    return table


def toml(value: Any) -> str:
    """A value as TOML: inline tables and arrays, and TOML's own nan and inf."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):  # control characters as TOML escapes, so TOML itself reads
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 32 or ord(c) == 127 or c in '"\\'
                             else c for c in value) + '"'
    return repr(value)


def parse_table(table: dict) -> Config:
    text = "\n".join(f"{k} = {toml(v)}" for k, v in table.items())
    return parse_config(text, "hostile.toml", Path("/etc/sunrig"))


def key_of_error(key: str, value: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_table(table_with(key, value))
    assert err.value.file == "hostile.toml"
    return err.value.key


def test_every_number_in_the_config_has_a_lower_and_an_upper_bound():
    assert len(NUMERIC) > 80  # the walk reached the whole tree, lists of tables included
    unbounded = [key for key, _, meta in NUMERIC
                 if meta.get("min") is None or meta.get("max") is None]
    assert unbounded == []


def test_every_range_admits_its_default():
    for key, _, meta in NUMERIC:
        assert meta["min"] <= meta["max"], key
    for key, _, meta, cls in walk():
        f = next(f for f in fields(cls) if f.name == key.rsplit(".", 1)[-1])
        if f.default is not MISSING and isinstance(f.default, int | float) and "min" in meta:
            assert meta["min"] <= f.default <= meta["max"], key


@pytest.mark.parametrize("key", [key for key, _, _ in NUMERIC])
def test_nan_infinity_and_1e308_are_refused_naming_the_key(key):
    for value in NON_FINITE_AND_HUGE:
        # a list of numbers names the item: 'energy.modbus.units[0]'
        assert key_of_error(key, value).startswith(key), value


@pytest.mark.parametrize("key, tp, meta", NUMERIC, ids=[key for key, _, _ in NUMERIC])
def test_numbers_beyond_either_bound_are_refused_naming_the_key(key, tp, meta):
    whole = int in (tp, *get_args(tp))
    lo, hi = meta["min"], meta["max"]
    for value in (hi + abs(hi) + 1, lo - abs(lo) - 1, 10**30, -(10**30)):
        value = int(value) if whole else float(value)
        assert key_of_error(key, value).startswith(key), value


@pytest.mark.parametrize("key, meta", [(key, meta) for key, _, meta in TEXTS],
                         ids=[key for key, _, _ in TEXTS])
def test_huge_text_and_control_characters_are_refused_naming_the_key(key, meta):
    most = MAX_PATH_CHARS if meta.get("path") else MAX_TEXT_CHARS
    for value in ("x" * (most + 1), "a\x00b", "line\nbreak", "tab\there", "del\x7f",
                  "c1\x85", "sep\u2028"):
        assert key_of_error(key, value).startswith(key), repr(value[:20])


def test_lists_tables_and_scalars_in_each_others_places_are_refused_naming_the_key():
    tried = 0
    for key, tp, _, _ in walk():
        wrong = [["a", "list"], {"a": "table"}] if get_origin(tp) is not tuple else ["text", 5, {}]
        for value in wrong:
            assert key_of_error(key, value).startswith(key.removesuffix("[0]")), (key, value)
            tried += 1
    assert tried > 300


def test_a_list_longer_than_allowed_is_refused_naming_it():
    assert key_of_error("local.schedule", [ITEM[ReservationWindow]] * (MAX_LIST_ITEMS + 1)) \
        == "local.schedule"
    err = parse_error("[tee]\nrims = [" + ", ".join(['"r.xml"'] * (MAX_LIST_ITEMS + 1)) + "]\n")
    assert err.key == "tee.rims" and f"at most {MAX_LIST_ITEMS}" in err.problem


def parse_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "hostile.toml", Path("/etc/sunrig"))
    return err.value


def test_a_choice_needs_its_own_type_not_an_equal_number():
    assert parse_error("[planner]\nslot_minutes = 15.0\n").key == "planner.slot_minutes"
    assert parse_error("[planner]\nslot_minutes = nan\n").key == "planner.slot_minutes"


def test_dates_outside_a_plausible_span_are_refused():
    for day in ("0001-01-01", "9999-12-31", "1969-12-31", "2100-01-01"):
        err = parse_error(f"[[capex.items]]\nname = 'x'\namount = 1\ndate = '{day}'\n")
        assert err.key == "capex.items[0].date" and day in err.problem


def test_two_cost_items_of_one_name_are_refused_before_either_is_kept():
    items = ("[[capex.items]]\nname = 'HGX'\namount = 1\ndate = '2026-01-01'\n" * 2)
    assert parse_error(items).key == "capex.items[1].name"
    opex = "[[capex.opex]]\nname = 'HGX'\namount_per_month = 1\nsince = '2026-01-01'\n"
    assert parse_error(items.split("[[", 2)[1].join(["[[", ""]) + opex).key == \
        "capex.opex[0].name"


def test_error_messages_quote_a_huge_value_cut_short():
    err = parse_error("[site]\nname = '" + "x" * 100_000 + "'\n")
    assert err.key == "site.name" and len(str(err)) < 300
    err = parse_error("[site]\n" + "y" * 50_000 + " = 1\n")
    assert err.key.startswith("site.yyy") and len(str(err)) < 500
    err = parse_error("[webui]\nport = 1" + "0" * 5000 + "\n")  # beyond Python's int printing
    assert "too long" in str(err) and len(str(err)) < 300
    err = parse_error("[webui]\nport = 1" + "0" * 4000 + "\n")  # read, but far out of range
    assert err.key == "webui.port" and len(str(err)) < 300


# --- files that are not config files ------------------------------------------------------------

def deep(levels: int) -> str:
    return "a = " + "[" * levels + "]" * levels + "\n"


HOSTILE_FILES = {
    "not_utf8.toml": b"[site]\nname = '\xff\xfe caf\xe9'\n",
    "utf16.toml": "[site]\nname = 'x'\n".encode("utf-16"),
    "binary.toml": bytes(range(256)) * 8,
    "nul.toml": b"\x00" * 64,
    "empty.toml": b"",
    "blank.toml": b" \n\t\n",
    "deep_arrays.toml": deep(100_000).encode(),
    "deep_arrays_1000.toml": deep(1000).encode(),
    "deep_tables.toml": ("a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n").encode(),
    "huge.toml": b"# " + b"x" * MAX_CONFIG_BYTES + b"\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_config_check_of_a_hostile_file_exits_2_naming_it(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_bytes(HOSTILE_FILES[name])
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err and len(err) < 1000


def release_a_reader(fifo: Path, done: threading.Event) -> threading.Thread:
    """Should the FIFO be opened for reading, which would wait for a writer forever, open it
    for writing and close it, so the read ends and the test fails instead of hanging. It
    watches until `done`, however long the test takes."""
    def writer() -> None:
        while not done.wait(0.05):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:  # no reader: as it should be
                continue
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return thread


def test_config_check_of_a_folder_a_fifo_or_nothing_exits_2_naming_it(tmp_path, capsys):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    done = threading.Event()
    writer = release_a_reader(fifo, done)
    try:
        link = tmp_path / "link.toml"
        link.symlink_to(fifo)
        for path, why in ((tmp_path, "folder"), (fifo, "not a regular file"),
                          (link, "not a regular file"), (Path("/dev/null"), "not a regular file"),
                          (tmp_path / "missing.toml", "no such file")):
            assert main(["config", "check", str(path)]) == 2
            err = capsys.readouterr().err
            assert str(path) in err and why in err.lower()
    finally:
        done.set()
        writer.join()


def test_a_config_that_turns_into_a_fifo_after_a_look_is_still_refused(tmp_path, capsys,
                                                                        monkeypatch):
    """What the path holds is judged on the file opened, not on an earlier look at the path,
    which another process may change in between."""
    regular = tmp_path / "regular.toml"
    regular.write_text("")
    looked = regular.stat()
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    monkeypatch.setattr(Path, "stat", lambda self, **kw: looked)  # a look that saw a file
    done = threading.Event()
    writer = release_a_reader(fifo, done)
    try:
        assert main(["config", "check", str(fifo)]) == 2
    finally:
        done.set()
        writer.join()
    assert "not a regular file" in capsys.readouterr().err


def test_a_file_that_is_not_utf8_says_so():
    from node.config import load_config

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"sunrig-latin1-{os.getpid()}.toml"
    path.write_bytes("[site]\nname = 'café'\n".encode("latin-1"))
    try:
        with pytest.raises(ConfigError) as err:
            load_config(path)
    finally:
        path.unlink()
    assert "UTF-8" in err.value.problem and err.value.file == str(path)
