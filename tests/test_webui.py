import json
from datetime import date

import pytest

from node.status import agent_status
from tests.conftest import make_agent, run_for
from webui.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    agent, clock = make_agent(tmp_path_factory.mktemp("web"), orders_per_hour=6.0,
                              ask_price_per_gpu_hour=1.8)
    run_for(agent, clock, hours=4)
    app = create_app(lambda: agent_status(agent))
    yield app.test_client()
    agent.store.close()


def test_api_status_shows_gpus_site_price_and_leases(client):
    r = client.get("/api/status")
    assert r.status_code == 200
    s = r.get_json()
    assert s["ok"] is True and len(s["gpus"]) == 8
    assert {g["role"] for g in s["gpus"]} <= {"local", "market", "parked"}
    assert sum(s["roles"].values()) == 8
    assert s["site"]["pv_w"] > 0 and s["site"]["load_w"] > 0
    flows = s["site"]["flows"]
    assert 0 < sum(f["power_w"] for f in flows if f["to"] == "rig") <= s["rig_power_w"] + 1
    assert sum(f["power_w"] for f in flows if f["from"] == "pv") <= s["site"]["pv_w"] + 1
    assert s["price"]["import_per_kwh"] > s["price"]["export_per_kwh"]
    assert s["leases"] and all(len(le["gpu_indexes"]) == le["gpus"] for le in s["leases"])
    leased = {i for le in s["leases"] for i in le["gpu_indexes"]}
    assert all(s["gpus"][i]["lease_id"] for i in leased)
    assert s["today"]["revenue"] > 0 and s["today"]["energy_cost"] > 0
    assert s["payback"]["capex"] == 484000.0
    assert s["healthy"] is True


def test_overview_page_embeds_the_status(client):
    r = client.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Demo rig" in html and 'id="gpus"' in html
    start = html.index('type="application/json">') + len('type="application/json">')
    embedded = json.loads(html[start:html.index("</script>", start)])
    assert len(embedded["gpus"]) == 8
    assert client.get("/static/overview.js").status_code == 200


def test_api_errors_are_json(client):
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.get_json()["ok"] is False
    r = client.post("/api/status")
    assert r.status_code == 405 and r.get_json() == {"ok": False, "error": r.get_json()["error"]}


def test_plan_api_and_page_show_the_next_slots(tmp_path):
    from node.status import agent_status, plan_view
    from tests.conftest import make_agent, run_for
    from webui.app import create_app

    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.5)
    c = create_app(lambda: agent_status(agent), views={"plan": lambda args: plan_view(agent)}
                   ).test_client()
    doc = c.get("/api/plan").get_json()
    assert doc["ok"] and doc["planner"] == "milp" and len(doc["slots"]) >= 47 * 4
    first = doc["slots"][0]
    assert first["import_per_kwh"] is not None and first["offered"]["sim"] >= 0
    assert any(s["pv_w"] > 1000 for s in doc["slots"])  # June: the sun comes up
    page = c.get("/plan")
    assert page.status_code == 200 and b"uPlot.iife.min.js" in page.data
    assert c.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert c.get("/api/nothing").status_code == 404
    agent.store.close()


def test_history_and_payback_views_and_the_csv(tmp_path):
    import csv
    import io
    from datetime import UTC, datetime

    from node.service import views_for
    from node.status import agent_status
    from tests.conftest import make_agent, run_for
    from webui.app import create_app
    # after the demo's CapEx date, so the payback counts these days
    agent, clock = make_agent(tmp_path, start=datetime(2026, 6, 10, 19, tzinfo=UTC),
                              orders_per_hour=6.0, ask_price_per_gpu_hour=1.8)
    run_for(agent, clock, hours=8)  # across local midnight: two days
    c = create_app(lambda: agent_status(agent), views=views_for(agent)).test_client()
    h = c.get("/api/history").get_json()
    assert h["ok"] and len(h["days"]) == 2
    day = h["days"][0]
    assert day["energy_cost"] > 0 and set(day["kwh_by_source"]) <= {"pv", "battery", "grid"}
    assert day["net"] == round(day["revenue"] - day["energy_cost"], 4)
    rows = list(csv.reader(io.StringIO(c.get(f"/api/history.csv?from={h['from']}").get_data(
        as_text=True))))
    assert rows[0][:4] == ["day", "revenue", "energy_cost", "net"] and len(rows) == 3
    assert c.get("/api/history?from=yesterday").status_code == 400
    assert c.get("/api/history?from=2026-02-01&to=2026-01-01").status_code == 400
    p = c.get("/api/payback").get_json()
    assert p["capex"] > 0 and p["items"] and p["cumulative"][-1]["net"] == pytest.approx(
        p["net_to_date"], abs=0.05)
    # the payback's net is History's cash with local value and OpEx (from its own date) added
    parts = p["parts"]
    assert parts["revenue"] - parts["energy_cost"] == pytest.approx(
        sum(d["net"] for d in h["days"]), abs=0.05)
    days_of_opex = (date.fromisoformat(p["today"]) - date.fromisoformat(p["since"])).days + 1
    assert parts["opex"] == pytest.approx(120 * 12 / 365 * days_of_opex, abs=0.05)
    for page in ("/history", "/payback"):
        assert c.get(page).status_code == 200
    agent.store.close()


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    """An agent run across local midnight, and a client of its views."""
    from datetime import UTC, datetime

    from node.service import views_for
    from tests.conftest import make_agent, run_for
    agent, clock = make_agent(tmp_path_factory.mktemp("days"),
                              start=datetime(2026, 6, 10, 19, tzinfo=UTC),
                              orders_per_hour=6.0, ask_price_per_gpu_hour=1.8)
    run_for(agent, clock, hours=8)
    yield agent, create_app(lambda: agent_status(agent), views=views_for(agent)).test_client()
    agent.store.close()


def ledger_kwh_by_day(agent) -> dict[str, float]:
    rows = agent.store.query("SELECT day, sum(energy_wh) AS wh FROM ledger_daily "
                             "WHERE category = 'energy' GROUP BY day")
    return {r["day"]: r["wh"] / 1000.0 for r in rows}


def test_history_presets_give_a_bar_every_step_that_adds_up_to_the_ledger(two_days):
    agent, c = two_days
    ledger = ledger_kwh_by_day(agent)
    week = c.get("/api/history?preset=week").get_json()
    assert week["step"] == "day" and len(week["bars"]) == 7 and week["to"] == "2026-06-11"
    assert week["timezone"] == "Europe/Amsterdam"
    for bar in week["bars"]:  # every day of the week, zero where nothing was booked
        assert sum(bar["kwh_by_source"].values()) == pytest.approx(ledger.get(bar["label"], 0),
                                                                   abs=0.01)
    day = c.get("/api/history?preset=day").get_json()
    assert day["step"] == "hour" and len(day["bars"]) == 24
    assert sum(sum(b["kwh_by_source"].values()) for b in day["bars"]) == pytest.approx(
        ledger["2026-06-11"], abs=0.01)
    assert day["bars"][0]["label"] == "2026-06-11T00:00:00+02:00"  # the site's midnight
    year = c.get("/api/history?preset=year").get_json()
    assert year["step"] == "month" and len(year["bars"]) == 13
    assert year["bars"][-1]["label"] == "2026-06"
    assert sum(year["totals"]["kwh_by_source"].values()) == pytest.approx(
        sum(ledger.values()), abs=0.01)


def test_the_last_24_hours_hold_every_booked_quarter_hour_of_the_rig(two_days):
    agent, c = two_days
    h = c.get("/api/history?preset=24h").get_json()
    assert h["step"] == "15m" and len(h["bars"]) == 96
    assert [b["ts"] for b in h["bars"]] == [h["bars"][0]["ts"] + 900 * i for i in range(96)]
    booked = agent.store.query("SELECT sum(energy_wh) AS wh FROM energy_bookings")[0]["wh"]
    assert sum(sum(b["kwh_by_source"].values()) for b in h["bars"]) == pytest.approx(
        booked / 1000.0, abs=0.01)  # the run is 8 hours: all of it lies in the last 24
    totals = h["totals"]
    assert totals["solar_share_pct"] == pytest.approx(
        100 * totals["kwh_by_source"].get("pv", 0) / sum(totals["kwh_by_source"].values()),
        abs=0.1)


@pytest.mark.parametrize("query, wrong", [("preset=decade", "preset must be one of"),
                                          ("preset=week&to=soon", "dates like"),
                                          ("from=2026-02-01&to=2026-01-01", "before to")])
def test_a_bad_history_query_says_what_was_wrong(two_days, query, wrong):
    r = two_days[1].get("/api/history?" + query)
    assert r.status_code == 400 and wrong in r.get_json()["error"]


def test_a_young_store_has_no_pace_date_but_says_how_many_days_it_has(two_days):
    agent, c = two_days
    p = c.get("/api/payback").get_json()
    assert p["pace"] == {"date": None, "horizon": "2051-06-11", "history_days": 2,
                         "min_days": 30, "state": "young"}
    s = c.get("/api/status").get_json()
    assert s["payback"]["pace"]["state"] == "young" and s["timezone"] == "Europe/Amsterdam"
    today = s["today"]
    assert today["solar_share_pct"] is not None
    assert set(today["energy_kwh_by_source"]) == set(today["energy_cost_by_source"])


def test_the_plan_says_now_its_zone_and_the_standing_reservation(two_days):
    agent, c = two_days
    p = c.get("/api/plan").get_json()
    assert p["now"] == agent.clock.now().isoformat() and p["timezone"] == "Europe/Amsterdam"
    assert p["reserved_gpus"] == agent.cfg.local.reserved_gpus
    assert all(s["house_w"] is not None for s in p["slots"])
    # the demo's weekday window keeps more GPUs local than the standing reservation
    assert any(s["local_gpus"] > p["reserved_gpus"] for s in p["slots"])


def test_status_has_earnings_per_market_and_costs_per_role_today_30_days_and_lifetime(
        tmp_path):
    from node.status import agent_status
    from tests.conftest import make_agent, run_for

    agent, clock = make_agent(tmp_path, orders_per_hour=6.0, ask_price_per_gpu_hour=1.8)
    run_for(agent, clock, hours=6)
    status = agent_status(agent)
    e = status["earnings"]["sim"]
    assert e["today"] > 0 and e["today"] <= e["last_30_days"] <= e["lifetime"]
    costs = status["energy_cost_by_role"]
    assert {"local", "market"} <= set(costs)
    assert sum(c["today"] for c in costs.values()) == pytest.approx(
        status["today"]["energy_cost"], abs=0.05)
    assert all(0 < c["kwh_today"] <= c["kwh_last_30_days"] <= c["kwh_lifetime"]
               for c in costs.values())
    agent.store.close()


# --- hostile bodies and answers -------------------------------------------------------------------

DEEP = 100_000
HOSTILE_BODIES = {
    "array nested 100k deep": b"[" * DEEP + b"]" * DEEP,
    "object nested 100k deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "nested 33 deep": b"[" * 33 + b"]" * 33,
    "latin-1, not UTF-8": b'{"site": {"name": "caf\xe9"}}',
    "UTF-16": '{"local": {"reserved_gpus": 1}}'.encode("utf-16"),
    "a stray 0xff byte": b'\xff{"local": {}}',
    "truncated UTF-8": b'{"local": "\xe2\x82"}',
    "huge": b'{"local": "' + b"x" * (1 << 20) + b'"}',
    "NaN literal": b'{"planner": {"wear_per_gpu_hour": NaN}}',
    "Infinity literal": b'{"planner": {"wear_per_gpu_hour": Infinity}}',
    "-Infinity literal": b'{"planner": {"wear_per_gpu_hour": -Infinity}}',
    "a float that overflows": b'{"planner": {"wear_per_gpu_hour": 1e999}}',
    "4400 digits": b'{"local": {"reserved_gpus": ' + b"9" * 4400 + b"}}",
    "top-level array": b'[{"local": {"reserved_gpus": 1}}]',
    "top-level string": b'"settings"',
    "top-level number": b"42",
    "top-level null": b"null",
    "empty": b"",
    "not JSON": b"reserved_gpus=1",
    "unclosed": b'{"local": {"reserved_gpus": 1}',
    "a key twice": b'{"local": {"reserved_gpus": 1, "reserved_gpus": 9}}',
    "a lone surrogate": b'{"site": {"name": "\\ud800"}}',
    "a lone surrogate as key": b'{"\\udfff": 1}',
    "a NUL byte outside strings": b'{"local": \x00}',
}


@pytest.fixture
def changing(tmp_path):
    """A logged-in client of an app whose settings action records what reaches it."""
    from argon2 import PasswordHasher

    from webui.auth import Auth

    auth = Auth(tmp_path)
    auth.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    auth.set_password("correct horse battery")
    reached: list = []
    app = create_app(lambda: {"ok_value": 1.0}, auth,
                     actions={"settings": lambda body: reached.append(body) or {"ok": True}})
    c = app.test_client()
    token = c.get("/api/session").get_json()["csrf_token"]
    r = c.post("/login", json={"password": "correct horse battery"},
               headers={"X-CSRF-Token": token})
    return c, r.get_json()["csrf_token"], reached


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} in an answer")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_a_hostile_body_gets_a_400_in_the_json_error_shape_and_changes_nothing(changing, name):
    c, token, reached = changing
    for path in ("/api/settings", "/login"):
        r = c.post(path, data=HOSTILE_BODIES[name], content_type="application/json",
                   headers={"X-CSRF-Token": token})
        assert r.status_code == 400, (path, r.status_code, r.get_data()[:200])
        doc = strict_json(r.get_data(as_text=True))
        assert doc["ok"] is False and isinstance(doc["error"], str) and doc["error"]
        assert "Traceback" not in doc["error"] and len(doc["error"]) < 300
    assert reached == []
    ok = c.post("/api/settings", json={"local": {"reserved_gpus": 1}},
                headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and reached == [{"local": {"reserved_gpus": 1}}]


def test_a_body_refusal_says_what_was_wrong(changing):
    c, token, _ = changing

    def error(body: bytes, content_type: str = "application/json") -> str:
        r = c.post("/api/settings", data=body, content_type=content_type,
                   headers={"X-CSRF-Token": token})
        return r.get_json()["error"]
    assert "nested more than" in error(HOSTILE_BODIES["array nested 100k deep"])
    assert "not UTF-8" in error(HOSTILE_BODIES["latin-1, not UTF-8"])
    assert "larger than" in error(HOSTILE_BODIES["huge"])
    assert "NaN is not a JSON number" in error(HOSTILE_BODIES["NaN literal"])
    assert "out of range" in error(HOSTILE_BODIES["a float that overflows"])
    assert "JSON object" in error(HOSTILE_BODIES["top-level array"])
    assert "appears twice" in error(HOSTILE_BODIES["a key twice"])
    assert "surrogates" in error(HOSTILE_BODIES["a lone surrogate"])
    assert "Content-Type" in error(b'{"local": {}}', "text/plain")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_an_answer_that_json_cannot_carry_is_reported_never_sent_broken(bad):
    app = create_app(lambda: {"rig_power_w": bad},
                     views={"plan": lambda args: {"slots": [{"margin": bad}]}})
    c = app.test_client()
    for path in ("/api/status", "/api/plan"):
        r = c.get(path)
        assert r.status_code == 500
        assert "not a JSON number" in strict_json(r.get_data(as_text=True))["error"]
    page = c.get("/")
    assert page.status_code == 500 and b"not a JSON number" in page.data
