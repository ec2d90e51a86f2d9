"""Settings changed while running: checked like the config file, effective at once, logged,
kept across a restart; refused without the login."""

from __future__ import annotations

import json
import math
import sqlite3
from functools import partial

import pytest

from node import settings
from node.clock import SimulatedClock
from node.errors import ConfigError
from node.service import open_agent
from tests.conftest import START, demo_cfg, make_agent, run_for


def test_a_change_takes_effect_is_logged_and_survives_a_restart(tmp_path):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.2)
    out = agent.change_settings({"local": {"reserved_gpus": 3},
                                 "planner": {"margin_per_gpu_hour": 0.4}})
    assert out["local"]["reserved_gpus"] == 3
    assert agent.state.plan.slots[0].local_gpus == 3  # re-planned at once
    events = [e["message"] for e in agent.store.events(20)]
    assert any("local.reserved_gpus: 1 -> 3" in m and "margin_per_gpu_hour: 0.1 -> 0.4" in m
               for m in events)
    agent.store.close()
    again = open_agent(demo_cfg(tmp_path), clock=SimulatedClock(START, speed=0))
    assert again.cfg.local.reserved_gpus == 3 and again.cfg.planner.margin_per_gpu_hour == 0.4
    again.store.close()


@pytest.mark.parametrize("changes, key", [
    ({"local": {"reserved_gpus": 99}}, "local.reserved_gpus"),
    ({"local": {"schedule": [{"days": ["mon"], "start": "18:00", "end": "08:00", "gpus": 2}]}},
     "local.schedule[0].end"),
    ({"local": {"schedule": [{"days": ["funday"], "start": "08:00", "end": "18:00",
                              "gpus": 2}]}}, "local.schedule[0].days"),
    ({"planner": {"margin_per_gpu_hour": -1}}, "planner.margin_per_gpu_hour"),
    ({"planner": {"horizon_hours": 12}}, "planner.horizon_hours"),
    ({"markets": {}}, "markets"),
    ({"tariff": {"prices_file": "x.csv"}}, "tariff.prices_file"),
    ({"tariff": {"kind": "nuclear"}}, "tariff.kind"),
    ({"capex": {"items": [{"name": "HGX", "amount": -5, "date": "2026-01-01"}]}},
     "capex.items[0].amount"),
])
def test_a_wrong_value_names_its_key_and_changes_nothing(tmp_path, changes, key):
    cfg = demo_cfg(tmp_path)
    with pytest.raises(ConfigError) as err:
        settings.apply(cfg, changes)
    assert err.value.key.startswith(key)


def test_the_api_needs_the_login_and_answers_errors_beside_the_field(tmp_path):
    from node.service import _change
    from node.status import agent_status
    from webui.app import create_app
    from webui.auth import Auth

    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.1)
    auth = Auth(tmp_path)
    auth.set_password("correct horse battery")
    c = create_app(lambda: agent_status(agent), auth,
                   views={"settings": lambda args: settings.current(agent.cfg)},
                   actions={"settings": lambda body: _change(agent, body)}).test_client()
    assert c.get("/api/settings").get_json()["local"]["reserved_gpus"] == 1
    assert c.post("/api/settings", json={"local": {"reserved_gpus": 2}}).status_code == 401
    token = c.get("/api/session").get_json()["csrf_token"]
    c.post("/login", json={"password": "correct horse battery"},
           headers={"X-CSRF-Token": token})
    token = c.get("/api/session").get_json()["csrf_token"]
    bad = c.post("/api/settings", json={"local": {"reserved_gpus": -2}},
                 headers={"X-CSRF-Token": token})
    assert bad.status_code == 400 and bad.get_json()["field"] == "local.reserved_gpus"
    ok = c.post("/api/settings", json={"local": {"reserved_gpus": 2}},
                headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and agent.cfg.local.reserved_gpus == 2
    assert c.get("/settings").status_code == 200
    agent.store.close()


def test_capex_and_tariff_changes_reach_the_books_and_the_prices(tmp_path):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.2)
    agent.change_settings({
        "capex": {"items": [{"name": "HGX 8x H200", "amount": 400000, "date": "2024-01-01"},
                            {"name": "Battery", "amount": 9000, "date": "2024-03-01"}],
                  "opex": [{"name": "Fibre", "amount_per_month": 80, "since": "2024-01-01"}]},
        "tariff": {"kind": "fixed", "import_per_kwh": 0.5, "export_per_kwh": 0.01}})
    items = {i["name"]: i for i in agent.store.cost_items()}
    assert items["Battery"]["amount"] == 9000 and items["Fibre"]["amount_per_month"] == 80
    price = agent.store.price_at(clock.now())
    assert price["import_per_kwh"] == 0.5  # the new tariff, priced at once
    assert settings.current(agent.cfg)["tariff"]["kind"] == "fixed"
    agent.store.close()


def test_a_tariff_that_cannot_be_built_is_refused_and_nothing_is_kept(tmp_path):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.1)
    tariff = agent.parts.tariff
    with pytest.raises(ConfigError, match="ENTSO-E token"):
        agent.change_settings({"tariff": {"kind": "entsoe"}})
    assert agent.cfg.tariff.kind == "day_ahead" and agent.parts.tariff is tariff
    assert agent.store.get_meta(settings.META_KEY) is None
    agent.store.close()


# --- hostile changes, and stored settings that no longer validate -------------------------------

NON_FINITE_AND_HUGE = [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400]
NOT_NUMBERS = [True, "1", [1], {"a": 1}, None]
WINDOW = {"days": ["mon"], "start": "08:00", "end": "18:00", "gpus": 2}
ITEM = {"name": "HGX", "amount": 1000, "date": "2026-01-15"}
PERIOD = {"days": ["mon"], "start": "07:00", "end": "23:00", "import_per_kwh": 0.3,
          "export_per_kwh": 0.1}
# every number the dashboard may change, as a change that sets it
NUMBER_FIELDS = {
    "local.reserved_gpus": lambda v: {"local": {"reserved_gpus": v}},
    "local.schedule[0].gpus": lambda v: {"local": {"schedule": [{**WINDOW, "gpus": v}]}},
    **{f"planner.{k}": partial(lambda k, v: {"planner": {k: v}}, k)
       for k in settings.PLANNER_KEYS},
    "capex.items[0].amount": lambda v: {"capex": {"items": [{**ITEM, "amount": v}]}},
    "capex.opex[0].amount_per_month": lambda v: {"capex": {"opex": [
        {"name": "Fibre", "amount_per_month": v, "since": "2026-01-15"}]}},
    "tariff.import_per_kwh": lambda v: {"tariff": {"import_per_kwh": v}},
    "tariff.export_per_kwh": lambda v: {"tariff": {"export_per_kwh": v}},
    "tariff.periods[0].import_per_kwh": lambda v: {"tariff": {"periods": [
        {**PERIOD, "import_per_kwh": v}]}},
    "tariff.periods[0].export_per_kwh": lambda v: {"tariff": {"periods": [
        {**PERIOD, "export_per_kwh": v}]}},
}
HUGE = "x" * 1_000_000
SHAPES = [  # (change, the key its error names)
    ([], ""), ("local", ""), (None, ""), (5, ""),
    ({"local": []}, "local"), ({"local": "strict"}, "local"), ({"capex": 5}, "capex"),
    ({"planner": None}, "planner"), ({"tariff": [["fixed"]]}, "tariff"),
    ({"local": {"schedule": WINDOW}}, "local.schedule"),
    ({"local": {"schedule": [["mon"]]}}, "local.schedule[0]"),
    ({"local": {"schedule": [{**WINDOW, "days": "mon"}]}}, "local.schedule[0].days"),
    ({"local": {"reservation": ["soft"]}}, "local.reservation"),
    ({"tariff": {"kind": ["fixed"]}}, "tariff.kind"),
    ({"tariff": {"import_formula": ["spot"]}}, "tariff.import_formula"),
    ({"capex": {"items": [{**ITEM, "name": ["HGX"]}]}}, "capex.items[0].name"),
    ({"capex": {"items": [{**ITEM, "date": {"y": 2026}}]}}, "capex.items[0].date"),
    ({"tariff": {"import_formula": HUGE}}, "tariff.import_formula"),
    ({"capex": {"items": [{**ITEM, "name": HUGE}]}}, "capex.items[0].name"),
    ({"capex": {"items": [{**ITEM, "name": "a\x00b"}]}}, "capex.items[0].name"),
    ({"capex": {"opex": [{"name": "lone\ud800", "amount_per_month": 1, "since": "2026-01-01"}]}},
     "capex.opex[0].name"),  # JSON can carry it; no database can keep it
    ({"tariff": {"export_formula": "spot\x85"}}, "tariff.export_formula"),
    ({"local": {"schedule": [{**WINDOW, "start": HUGE}]}}, "local.schedule[0].start"),
    ({HUGE: {}}, HUGE[:60]), ({"planner": {HUGE: 1}}, "planner." + HUGE[:60]),
    ({"local": {HUGE: 1}}, "local." + HUGE[:60]),
    ({"local": {"schedule": [WINDOW] * 1001}}, "local.schedule"),
    ({"capex": {"items": [ITEM, ITEM]}}, "capex.items[1].name"),
    ({"capex": {"items": [{**ITEM, "date": "0001-01-01"}]}}, "capex.items[0].date"),
]


def hostile_numbers() -> list[tuple[dict, str]]:
    return [(change(v), key) for key, change in NUMBER_FIELDS.items()
            for v in NON_FINITE_AND_HUGE + NOT_NUMBERS]


def test_every_hostile_change_is_refused_naming_its_key_in_a_short_message(tmp_path):
    cfg = demo_cfg(tmp_path)
    cases = hostile_numbers() + SHAPES
    assert len(cases) > 130
    for changes, key in cases:
        with pytest.raises(ConfigError) as err:
            settings.apply(cfg, changes)
        assert err.value.key.startswith(key), (key, err.value.key)
        assert len(str(err.value)) < 400, key


def stored(agent) -> tuple:
    """Everything a change would keep: the settings, the books' cost items, the events."""
    return (agent.store.get_meta(settings.META_KEY),
            agent.store.get_meta(settings.PREVIOUS_KEY), agent.store.cost_items(),
            [e["message"] for e in agent.store.events(100)], agent.cfg, agent.parts.tariff)


def test_a_nan_capex_amount_is_refused_keeps_nothing_and_the_agent_starts_again(tmp_path):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.1)
    before = stored(agent)
    for changes, _ in hostile_numbers() + SHAPES:
        with pytest.raises(ConfigError):
            agent.change_settings(changes)
    assert stored(agent) == before
    agent.store.close()
    again = open_agent(demo_cfg(tmp_path), clock=SimulatedClock(START, speed=0))
    assert again.cfg == agent.cfg
    again.store.close()


def test_a_change_whose_keeping_fails_leaves_nothing_behind(tmp_path, monkeypatch):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.1)
    agent.change_settings({"local": {"reserved_gpus": 2}})
    before = stored(agent)

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(agent.store, "add_event", disk_full)  # the last write of the change
    with pytest.raises(sqlite3.OperationalError):
        agent.change_settings({"capex": {"items": [ITEM]}, "local": {"reserved_gpus": 3},
                               "tariff": {"kind": "fixed", "import_per_kwh": 0.5}})
    monkeypatch.undo()
    assert stored(agent) == before
    agent.store.close()


def test_stored_settings_that_no_longer_validate_fall_back_to_the_last_good_ones(tmp_path):
    agent, clock = make_agent(tmp_path)
    agent.change_settings({"local": {"reserved_gpus": 2}})
    agent.change_settings({"local": {"reserved_gpus": 3}})
    store = agent.store
    # as an older version kept it: json writes NaN, which nothing accepts any more
    bad = json.loads(store.get_meta(settings.META_KEY))
    bad["capex"]["items"] = [{**ITEM, "amount": math.nan}]
    with store.transaction() as db:
        store.set_meta(db, settings.META_KEY, json.dumps(bad))
    store.close()

    again = reopen(tmp_path)
    assert again.cfg.local.reserved_gpus == 2  # the change before the bad one
    assert any("no longer validate" in e["message"] and "capex.items[0].amount" in e["message"]
               for e in again.store.events(5))
    again.change_settings({"local": {"reserved_gpus": 4}})  # the bad one never becomes "last good"
    assert json.loads(again.store.get_meta(settings.PREVIOUS_KEY))["local"]["reserved_gpus"] == 2
    with again.store.transaction() as db:
        again.store.set_meta(db, settings.META_KEY, "{not json")
        again.store.set_meta(db, settings.PREVIOUS_KEY, json.dumps(bad))
    again.store.close()

    last = reopen(tmp_path)
    assert last.cfg == demo_cfg(tmp_path)  # nothing stored validates: the config file's values
    events = [e["message"] for e in last.store.events(2)]
    assert "saved before them no longer validate" in events[0] and "Expecting" in events[1]
    assert last.store.get_meta(settings.META_KEY) == "{not json"  # kept, for the owner to see
    last.store.close()


def reopen(tmp_path):
    agent = open_agent(demo_cfg(tmp_path), clock=SimulatedClock(START, speed=0))
    agent.run_all_once()
    assert agent.healthy()
    return agent


def test_a_saved_tariff_is_the_one_priced_after_a_restart_or_falls_back_if_unbuildable(tmp_path):
    agent, clock = make_agent(tmp_path)
    agent.change_settings({"tariff": {"kind": "fixed", "import_per_kwh": 0.5}})
    agent.store.close()
    again = reopen(tmp_path)
    assert again.store.price_at(START)["import_per_kwh"] == 0.5
    # a tariff saved while its token file was there, read at a start without it
    again.change_settings({"tariff": {"import_per_kwh": 0.6}})
    entsoe = settings.current(again.cfg)
    entsoe["tariff"]["kind"] = "entsoe"
    with again.store.transaction() as db:
        again.store.set_meta(db, settings.META_KEY, json.dumps(entsoe))
    again.store.close()
    last = reopen(tmp_path)
    assert (last.cfg.tariff.kind, last.cfg.tariff.import_per_kwh) == ("fixed", 0.5)
    assert any("ENTSO-E token" in e["message"] for e in last.store.events(5))
    last.store.close()


def test_the_settings_api_answers_strict_json_whatever_was_tried_or_stored(tmp_path):
    from node.service import views_for

    agent, clock = make_agent(tmp_path)
    for changes, _ in hostile_numbers():
        with pytest.raises(ConfigError):
            agent.change_settings(changes)
    text = json.dumps(views_for(agent)["settings"]({}), allow_nan=False)
    assert json.loads(text)["capex"]["items"][0]["amount"] == 460000
    bad = {**settings.current(agent.cfg), "planner": {"margin_per_gpu_hour": math.inf}}
    with agent.store.transaction() as db:
        agent.store.set_meta(db, settings.META_KEY, json.dumps(bad))
    agent.store.close()
    again = reopen(tmp_path)
    json.dumps(views_for(again)["settings"]({}), allow_nan=False)
    again.store.close()


def test_every_wrong_key_of_a_change_is_named_at_once_each_beside_its_field(tmp_path):
    cfg = demo_cfg(tmp_path)
    window = {"days": ["mon"], "start": "08:00", "end": "18:00", "gpus": 2}
    changes = {"local": {"reserved_gpus": 99,
                         "schedule": [window, {**window, "days": ["funday"]},
                                      {**window, "start": "19:00"}]},
               "planner": {"margin_per_gpu_hour": -1, "horizon_hours": 12},
               "capex": {"items": [{"name": "HGX", "amount": -5, "date": "2026-01-01"}]},
               "markets": {}}
    with pytest.raises(settings.SettingsErrors) as err:
        settings.apply(cfg, changes)
    fields = [e.key for e in err.value.errors]
    assert sorted(fields) == sorted([
        "local.reserved_gpus", "local.schedule[1].days[0]", "local.schedule[2].end",
        "planner.margin_per_gpu_hour", "planner.horizon_hours", "capex.items[0].amount",
        "markets"])
    answer = settings.error_answer(err.value)
    assert answer["field"] == fields[0] and answer["error"] == err.value.errors[0].problem
    assert [e["field"] for e in answer["errors"]] == fields
    assert "at most 64" in next(e["error"] for e in answer["errors"]
                                if e["field"] == "local.reserved_gpus")
    assert len(str(err.value)) < 400  # the log line stays short: "(and 6 more)"


def test_one_wrong_key_is_answered_as_before_with_a_list_of_one(tmp_path):
    with pytest.raises(ConfigError) as err:
        settings.apply(demo_cfg(tmp_path), {"planner": {"margin_per_gpu_hour": -1}})
    answer = settings.error_answer(err.value)
    assert answer["errors"] == [{"field": "planner.margin_per_gpu_hour",
                                 "error": answer["error"]}]


def test_a_rule_across_items_is_named_when_each_item_is_right_alone(tmp_path):
    item = {"name": "HGX", "amount": 1000, "date": "2026-01-01"}
    with pytest.raises(ConfigError) as err:
        settings.apply(demo_cfg(tmp_path), {"capex": {"items": [item, item]}})
    assert err.value.key.startswith("capex.items[1]")
