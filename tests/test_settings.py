"""Settings changed while running: checked like the config file, effective at once, logged,
kept across a restart; refused without the login."""

from __future__ import annotations

import pytest

from node import settings
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
    from node.clock import SimulatedClock
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
