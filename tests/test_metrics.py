"""/metrics as Prometheus expects it: checked by promtool itself, counters that are lifetime
totals from the store (never down, not even across a restart or a midnight), per-GPU gauges,
active leases, and local inference per user and model with a latency histogram per model."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.books.totals import LATENCY_BUCKETS_S, Totals
from node.clock import SimulatedClock
from node.service import open_agent, status_with_totals
from node.storage.store import Store
from tests.conftest import HANG_S, demo_cfg, make_agent, run_for
from webui.app import create_app

# 21:00 in Amsterdam: two hours before the site's midnight
EVENING = datetime(2024, 6, 12, 19, 0, tzinfo=UTC)
MORNING = datetime(2024, 6, 12, 8, 0, tzinfo=UTC)
COUNTERS = ("sunrig_revenue_total", "sunrig_rig_energy_joules_total",
            "sunrig_inference_requests_total", "sunrig_inference_prompt_tokens_total",
            "sunrig_inference_completion_tokens_total", "sunrig_inference_errors_total",
            "sunrig_inference_request_duration_seconds_count",
            "sunrig_inference_request_duration_seconds_sum")


def scrape(status) -> str:
    answer = create_app(status).test_client().get("/metrics")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def counters(text: str) -> dict[tuple[str, tuple], float]:
    return {k: v for k, v in samples(text).items() if k[0] in COUNTERS}


def usage(store: Store, user: str, model: str, status: int, latency_ms: float,
          prompt: int = 10, completion: int = 5) -> dict:
    ts = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
    return {"ts": ts.timestamp(), "day": store.local_day(ts), "user": user, "model": model,
            "endpoint": "chat", "stream": 0, "status": status, "prompt_tokens": prompt,
            "completion_tokens": completion, "latency_ms": latency_ms, "metered": "reported"}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """An agent that ran two sunny hours on the simulated market, with some local use."""
    agent, clock = make_agent(tmp_path_factory.mktemp("rig"), start=MORNING)
    run_for(agent, clock, hours=2)
    agent.run_job("ledger")
    agent.store.add_inference_usage([usage(agent.store, "ann", "tiny", 200, 80.0),
                                     usage(agent.store, "ann", "tiny", 502, 12.0, 10, 0)])
    yield agent, clock
    agent.store.close()


def test_metrics_pass_promtool_check_metrics(rig):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (make test does)"
    text = scrape(status_with_totals(rig[0], None))
    assert "sunrig_revenue_total" in text and "sunrig_gpu_power_watts" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=HANG_S)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not (checked.stdout + checked.stderr).strip(), checked.stdout + checked.stderr
    # the same check turns away a counter named against the convention: it can fail
    bad = "# HELP sunrig_x Some count\n# TYPE sunrig_x counter\nsunrig_x 1\n"
    refused = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True,
                             text=True, timeout=HANG_S)
    assert refused.returncode != 0 and "_total" in refused.stdout + refused.stderr


def test_counters_never_go_down_across_a_restart_and_midnight(tmp_path):
    agent, clock = make_agent(tmp_path, start=EVENING)
    run_for(agent, clock, hours=2)
    agent.run_job("ledger")
    before = scrape(status_with_totals(agent, None))
    agent.store.close()
    # a restart: a new process's collector on the same store, rebuilt from its lifetime sums
    clock = SimulatedClock(clock.now(), speed=0)
    agent = open_agent(demo_cfg(tmp_path), clock=clock)
    status = status_with_totals(agent, None)
    assert counters(scrape(status)) == counters(before)
    run_for(agent, clock, hours=2)  # past the site's midnight
    agent.run_job("ledger")
    after = scrape(status)
    agent.store.close()
    old, new = counters(before), counters(after)
    assert old and set(old) <= set(new)
    assert all(new[k] >= v for k, v in old.items()), [k for k, v in old.items() if new[k] < v]
    energy = [k for k in new if k[0] == "sunrig_rig_energy_joules_total"]
    assert sum(new[k] for k in energy) > sum(old.get(k, 0.0) for k in energy)
    # the day's gauge started again at midnight; the counter carried on
    today_kwh = "sunrig_rig_energy_today_kwh"
    old_today = sum(v for k, v in samples(before).items() if k[0] == today_kwh)
    new_today = sum(v for k, v in samples(after).items() if k[0] == today_kwh)
    assert new_today < old_today


def test_lifetime_energy_and_revenue_are_the_ledgers_sums(rig):
    agent, _ = rig
    got = samples(scrape(status_with_totals(agent, None)))
    wh = agent.store.query("SELECT sum(energy_wh) AS wh FROM energy_bookings")[0]["wh"]
    joules = sum(v for k, v in got.items() if k[0] == "sunrig_rig_energy_joules_total")
    rows = agent.store.query("SELECT count(*) AS n FROM ledger_daily")[0]["n"]
    assert joules == pytest.approx(wh * 3600.0, abs=3.6 * rows)  # summed in mWh, exactly
    paid = agent.store.query("SELECT market, sum(amount) AS a FROM payouts GROUP BY market")
    assert paid, "the simulated market paid nothing in two hours"
    for r in paid:
        key = ("sunrig_revenue_total", (("currency", "EUR"), ("market", r["market"])))
        assert got[key] == pytest.approx(r["a"], abs=1e-6)


def test_each_gpu_has_its_gauges_and_one_role(rig):
    agent, _ = rig
    got = samples(scrape(status_with_totals(agent, None)))
    for index, snap in agent.state.gpus.items():
        gpu = str(index)
        assert got[("sunrig_gpu_power_watts", (("gpu", gpu),))] == snap.power_w
        assert got[("sunrig_gpu_temperature_celsius", (("gpu", gpu),))] == snap.temp_c
        assert got[("sunrig_gpu_utilization_ratio", (("gpu", gpu),))] == snap.util_pct / 100
        roles = {k[1][1][1]: v for k, v in got.items()
                 if k[0] == "sunrig_gpu_role" and k[1][0] == ("gpu", gpu)}
        assert sorted(roles) == ["local", "market", "parked"] and sum(roles.values()) == 1.0
        assert roles[agent.state.assignments[index].role] == 1.0
        info = ("sunrig_gpu_info", (("gpu", gpu), ("name", snap.name), ("uuid", snap.uuid)))
        assert got[info] == 1.0


def test_active_leases_are_counted_per_market(rig):
    agent, _ = rig
    got = samples(scrape(status_with_totals(agent, None)))
    active = agent.store.leases("active")
    assert active, "no lease is active on the simulated market"
    for market in {r["market"] for r in active}:
        mine = [r for r in active if r["market"] == market]
        assert got[("sunrig_leases_active", (("market", market),))] == len(mine)
        assert got[("sunrig_leased_gpus", (("market", market),))] == sum(r["gpus"] for r in mine)


def test_inference_counts_per_user_and_model_and_errors_by_status(store):
    store.add_inference_usage([usage(store, "ann", "tiny", 200, 40.0, 100, 20),
                               usage(store, "ann", "tiny", 200, 700.0, 50, 30),
                               usage(store, "bob", "tiny", 429, 1.0, 0, 0),
                               usage(store, "bob", "big", 502, 9000.0, 7, 0)])
    totals = Totals(store)
    got = samples(scrape(lambda: {"lifetime": totals.lifetime()}))
    ann = (("model", "tiny"), ("user", "ann"))
    assert got[("sunrig_inference_requests_total", ann)] == 2
    assert got[("sunrig_inference_prompt_tokens_total", ann)] == 150
    assert got[("sunrig_inference_completion_tokens_total", ann)] == 50
    assert ("sunrig_inference_errors_total", ann + (("status", "200"),)) not in got
    bob = ("sunrig_inference_errors_total", (("model", "tiny"), ("status", "429"),
                                             ("user", "bob")))
    assert got[bob] == 1
    assert got[("sunrig_inference_requests_total", (("model", "big"), ("user", "bob")))] == 1


def test_the_latency_histogram_holds_answered_requests_per_model(store):
    store.add_inference_usage([usage(store, "ann", "tiny", 200, 40.0),
                               usage(store, "bob", "tiny", 200, 700.0),
                               usage(store, "bob", "tiny", 500, 3.0)])
    totals = Totals(store)
    got = samples(scrape(lambda: {"lifetime": totals.lifetime()}))
    name = "sunrig_inference_request_duration_seconds"

    def bucket(le: str) -> float:
        return got[(f"{name}_bucket", (("le", le), ("model", "tiny")))]
    assert (bucket("0.05"), bucket("0.5"), bucket("1.0"), bucket("+Inf")) == (1, 1, 2, 2)
    assert got[(f"{name}_count", (("model", "tiny"),))] == 2
    assert got[(f"{name}_sum", (("model", "tiny"),))] == pytest.approx(0.74)
    assert len([k for k in got if k[0] == f"{name}_bucket"]) == len(LATENCY_BUCKETS_S) + 1


def test_new_requests_are_added_to_what_was_read_and_a_fresh_read_agrees(store):
    """A restarted agent reads every request at once; the running one added them batch by
    batch: both must give the same totals to the last digit, or the histogram's sum would look
    like a counter reset to Prometheus."""
    totals = Totals(store)
    store.add_inference_usage([usage(store, "ann", "tiny", 200, 40.1)])
    first = counters(scrape(lambda: {"lifetime": totals.lifetime()}))
    for latency_ms in (0.3, 400.7, 0.1, 1e4 / 3):
        store.add_inference_usage([usage(store, "ann", "tiny", 200, latency_ms),
                                   usage(store, "cy", "tiny", 503, 2.0)])
        totals.lifetime()
    second = counters(scrape(lambda: {"lifetime": totals.lifetime()}))
    ann = ("sunrig_inference_requests_total", (("model", "tiny"), ("user", "ann")))
    assert (first[ann], second[ann]) == (1, 5)
    assert second == counters(scrape(lambda: {"lifetime": Totals(store).lifetime()}))


def test_without_lifetime_totals_no_counter_is_made_up():
    text = scrape(lambda: {"currency": "EUR", "rig_power_w": 1200.0})
    got = samples(text)
    assert not [k for k in got if k[0].endswith(("_total", "_count", "_sum", "_bucket"))]
    assert got[("sunrig_rig_power_watts", ())] == 1200.0


def test_a_first_read_in_slices_of_ids_counts_every_request_once(store, monkeypatch):
    import node.books.totals

    store.add_inference_usage([usage(store, f"u{i % 3}", "tiny", 200 if i % 4 else 500,
                                     10.0 * i) for i in range(11)])
    whole = counters(scrape(lambda: {"lifetime": Totals(store).lifetime()}))
    monkeypatch.setattr(node.books.totals, "CHUNK_ROWS", 2)
    sliced = counters(scrape(lambda: {"lifetime": Totals(store).lifetime()}))
    assert sliced == whole
    requests = [v for k, v in whole.items() if k[0] == "sunrig_inference_requests_total"]
    assert sum(requests) == 11


def test_requests_through_the_gateway_with_the_openai_client_are_counted(tmp_path):
    """The whole chain: the official openai client, the gateway metering into the store, and
    the counters a new process rebuilds from it."""
    from dataclasses import replace

    import openai

    from node.config import default_config
    from node.inference.runtime import LocalInference
    from node.inference.users import add_user

    store = Store(tmp_path / "store.db", "Europe/Amsterdam")
    cfg = replace(default_config().inference, enabled=True, port=0, simulated=True)
    inference = LocalInference(cfg, store, SimulatedClock(MORNING, 1.0)).start()
    try:
        key = add_user(store, "ann", datetime.now(UTC))
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{inference.gateway.port}/v1",
                               api_key=key, max_retries=0)
        used = [client.chat.completions.create(
            model=cfg.simulated_model, max_tokens=8,
            messages=[{"role": "user", "content": "hello " * n}]).usage for n in (1, 3)]
        with pytest.raises(openai.NotFoundError):  # refused by the gateway itself: not stored
            client.chat.completions.create(model="no-such-model", messages=[])
    finally:
        inference.stop()
    got = samples(scrape(lambda: {"lifetime": Totals(store).lifetime()}))
    store.close()
    ann = (("model", cfg.simulated_model), ("user", "ann"))
    assert got[("sunrig_inference_requests_total", ann)] == 2
    assert got[("sunrig_inference_prompt_tokens_total", ann)] == sum(
        u.prompt_tokens for u in used)
    assert got[("sunrig_inference_completion_tokens_total", ann)] == sum(
        u.completion_tokens for u in used) > 0
    duration = "sunrig_inference_request_duration_seconds_count"
    assert got[(duration, (("model", cfg.simulated_model),))] == 2
