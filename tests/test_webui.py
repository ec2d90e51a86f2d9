import json

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
    c = create_app(lambda: agent_status(agent), views={"plan": lambda: plan_view(agent)}
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
