"""Local inference in the books: tokens valued at the owner's reference prices, beside cash."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from node.books.ledger import TokenPrice, book_local_value, payback
from node.cli.commands import main
from node.config import parse_config
from node.inference.users import key_sha256
from node.storage.store import Store

DAY = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)


def usage_row(store: Store, model: str, prompt: int, completion: int, status: int = 200):
    return {"ts": DAY.timestamp(), "day": store.local_day(DAY), "user": "ann", "model": model,
            "endpoint": "chat", "stream": 0, "status": status, "prompt_tokens": prompt,
            "completion_tokens": completion, "latency_ms": 12.5, "metered": "reported"}


def test_local_use_is_booked_once_at_the_reference_price_as_local_value(store: Store):
    store.add_inference_usage([usage_row(store, "tiny", 1_000_000, 500_000),
                               usage_row(store, "tiny", 0, 0, status=503),
                               usage_row(store, "unpriced", 10, 10)])
    prices = {"tiny": TokenPrice(0.5, 2.0)}
    assert book_local_value(store, prices) == 3
    assert book_local_value(store, prices) == 0  # booked once
    rows = {(r["category"], r["name"]): r["amount"] for r in store.daily("2024-06-10")}
    assert rows[("local_value", "tiny")] == 1.5
    assert rows[("local_value", "unpriced")] == 0.0
    store.add_inference_usage([usage_row(store, "tiny", 0, 1_000_000)])
    book_local_value(store, {"tiny": TokenPrice(0.5, 4.0)})  # a new price values new use only
    assert {r["name"]: r["amount"] for r in store.daily("2024-06-10")}["tiny"] == 5.5


def test_payback_counts_local_value_and_says_how_much_of_net_is_cash(store: Store):
    store.sync_cost_items([{"name": "rig", "kind": "capex", "amount": 1000.0,
                            "amount_per_month": 0.0, "date": "2024-06-01"}])
    store.add_payouts([{"market": "sim", "payout_id": "p1", "lease_id": "l1",
                        "ts": DAY.timestamp(), "day": "2024-06-10", "amount": 30.0,
                        "amount_market": 30.0}])
    from node.books.ledger import _recompute_days
    with store.transaction() as db:
        _recompute_days(db, {"2024-06-10"})
    store.add_inference_usage([usage_row(store, "tiny", 2_000_000, 1_000_000)])
    book_local_value(store, {"tiny": TokenPrice(5.0, 10.0)})
    pb = payback(store, date(2024, 6, 10))
    assert pb.net_to_date == 50.0
    assert (pb.cash_to_date, pb.local_value_to_date) == (30.0, 20.0)
    assert pb.paid_back_pct == 5.0
    # energy booked later the same day rebuilds the day and keeps the local value
    with store.transaction() as db:
        _recompute_days(db, {"2024-06-10"})
    assert payback(store, date(2024, 6, 10)).local_value_to_date == 20.0


def config_file(tmp_path) -> str:
    path = tmp_path / "sunrig.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "s.db"}"\n')
    parse_config(path.read_text(), str(path), tmp_path)
    return str(path)


def test_users_add_prints_a_key_once_and_keeps_only_its_hash(tmp_path, capsys):
    cfg = config_file(tmp_path)
    assert main(["users", "add", "ann", "--config", cfg]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("sk-sunrig-") and len(key) == 53
    store = Store(tmp_path / "s.db")
    stored = store.query("SELECT * FROM inference_users")
    assert stored[0]["key_sha256"] == key_sha256(key)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert key.encode() not in raw
    assert main(["users", "add", "ann", "--config", cfg]) == 1  # one key per user
    assert key not in capsys.readouterr().out


def test_users_list_and_revoke_work_on_the_demo_data_dir(tmp_path, capsys):
    data = tmp_path / "demo"
    assert main(["users", "add", "bob", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--json", "--data-dir", str(data)]) == 0
    listed = json.loads(capsys.readouterr().out)["users"]
    assert [(u["name"], u["revoked"], u["prompt_tokens"]) for u in listed] == [("bob", None, 0)]
    assert "key" not in json.dumps(listed)
    assert main(["users", "revoke", "bob", "--data-dir", str(data)]) == 0
    assert main(["users", "revoke", "bob", "--data-dir", str(data)]) == 1
    capsys.readouterr()
    main(["users", "list", "--data-dir", str(data)])
    assert "revoked" in capsys.readouterr().out


def test_a_bad_user_name_is_refused_before_the_store_is_touched(tmp_path, capsys):
    data = tmp_path / "demo"
    for name in ("", "-rf", "a b", "x" * 65, "ann\n", "ä"):
        assert main(["users", "add", "--data-dir", str(data), "--", name]) == 2
        assert main(["users", "revoke", "--data-dir", str(data), "--", name]) == 2
        assert "is not a user name" in capsys.readouterr().err
    assert not data.exists()


def test_prometheus_counts_requests_tokens_and_errors_per_user_and_model_from_the_store(
        store: Store):
    from node.books.totals import Totals
    from webui.metrics import registry_for, render

    store.add_inference_usage([usage_row(store, "tiny", 20, 6), usage_row(store, "tiny", 20, 6),
                               usage_row(store, "tiny", 0, 0, status=503)])
    text = render(registry_for(lambda: {"lifetime": Totals(store).lifetime()})).decode()
    assert 'sunrig_inference_prompt_tokens_total{model="tiny",user="ann"} 40.0' in text
    assert 'sunrig_inference_requests_total{model="tiny",user="ann"} 3.0' in text
    assert 'sunrig_inference_errors_total{model="tiny",status="503",user="ann"} 1.0' in text


def test_history_and_payback_pages_count_local_value_as_income_never_as_energy_cost(tmp_path):
    from node.status import agent_status, history_view, payback_view
    from tests.conftest import make_agent

    agent, clock = make_agent(tmp_path)
    store = agent.store
    day = store.local_day(clock.now())
    row = usage_row(store, "tiny", 2_000_000, 1_000_000)
    store.add_inference_usage([{**row, "ts": clock.now().timestamp(), "day": day}])
    book_local_value(store, {"tiny": TokenPrice(5.0, 10.0)})
    (shown,) = [d for d in history_view(agent, {})["days"] if d["day"] == day]
    assert (shown["local_value"], shown["energy_cost"], shown["net"]) == (20.0, 0.0, 0.0)
    assert shown["net_with_local_value"] == 20.0
    store.sync_cost_items([{"name": "rig", "kind": "capex", "amount": 1000.0,
                            "amount_per_month": 0.0, "date": "2024-06-01"}])
    page = payback_view(agent)
    assert page["cumulative"][-1]["net"] == 20.0
    assert (page["cash_to_date"], page["local_value_to_date"]) == (0.0, 20.0)
    assert agent_status(agent)["payback"]["local_value_to_date"] == 20.0
    store.close()


def test_config_check_applies_the_inference_rules_that_span_keys(tmp_path, capsys):
    path = tmp_path / "sunrig.toml"
    path.write_text("[inference]\nhost = '192.168.1.5'\n")
    assert main(["config", "check", str(path)]) == 2
    assert "inference.host" in capsys.readouterr().err
