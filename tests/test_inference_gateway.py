"""The gateway with a real llama-cpp-python server on the CPU, serving a tiny model the test
writes, driven by the official openai client; the server runs under the supervisor."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest
from conftest import wait_until
from tiny_gguf import write_tiny_llama

from node.books.ledger import book_local_value
from node.clock import SimulatedClock
from node.config import parse_config
from node.inference.runtime import LocalInference
from node.inference.users import add_user
from node.storage.store import Store

pytestmark = pytest.mark.slow
MODEL = "tiny"
PROMPT = "QZXV secret plans"  # the test looks for this text everywhere it must not be


def inference_config(tmp: Path, per_minute: float = 600.0):
    model = write_tiny_llama(tmp / "tiny.gguf")
    args = [sys.executable, "-m", "llama_cpp.server", "--model", "{model_path}",
            "--model_alias", "{model}", "--host", "127.0.0.1", "--port", "{port}",
            "--n_ctx", "512", "--embedding", "true", "--verbose", "false"]
    text = (f"[inference]\nenabled = true\nport = 1\nrequests_per_minute = {per_minute}\n"
            f"[[inference.servers]]\nmodel = \"{MODEL}\"\npreset = \"command\"\n"
            f"model_path = \"{model}\"\ngpus = 0\nargs = {json.dumps(args)}\n"
            f"[[inference.prices]]\nmodel = \"{MODEL}\"\ninput_per_million_tokens = 1.0\n"
            "output_per_million_tokens = 3.0\n")
    cfg = parse_config(text, "t.toml", tmp).inference
    return cfg


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference")
    store = Store(tmp / "store.db", "Europe/Amsterdam")
    from dataclasses import replace
    cfg = replace(inference_config(tmp), port=0)
    inference = LocalInference(cfg, store, SimulatedClock(
        datetime(2024, 6, 10, 10, tzinfo=UTC), 1.0)).start()
    wait_until(lambda: inference.supervisor.servers[0].backend.ready, "the llama server ready")
    key = add_user(store, "ann", datetime.now(UTC))
    base = f"http://127.0.0.1:{inference.gateway.port}/v1"
    yield store, inference, openai.OpenAI(base_url=base, api_key=key, max_retries=0), base, tmp
    inference.stop()
    store.close()


def stored_usage(store: Store) -> list[dict]:
    return store.query("SELECT * FROM inference_usage ORDER BY id")


def test_a_users_key_lists_the_models_and_gets_a_completion_metered_as_answered(rig):
    store, _, client, _, _ = rig
    assert [m.id for m in client.models.list()] == [MODEL]
    before = len(stored_usage(store))
    answer = client.chat.completions.create(
        model=MODEL, max_tokens=8, messages=[{"role": "user", "content": PROMPT}])
    row = wait_until(lambda: stored_usage(store)[before:], "the usage row")[0]
    assert (row["user"], row["model"], row["status"], row["metered"]) == (
        "ann", MODEL, 200, "reported")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert answer.usage.completion_tokens > 0
    text = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
    row = wait_until(lambda: stored_usage(store)[before + 1:], "the usage row")[0]
    assert (row["endpoint"], row["prompt_tokens"]) == ("completions", text.usage.prompt_tokens)


def test_a_stream_passes_chunk_by_chunk_and_gets_the_usage_chunk_it_asked_for(rig):
    store, _, client, _, _ = rig
    before = len(stored_usage(store))
    chunks = list(client.chat.completions.create(
        model=MODEL, max_tokens=12, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": PROMPT}]))
    assert len(chunks) > 2  # the tokens came as separate events, then the usage chunk
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    row = wait_until(lambda: stored_usage(store)[before:], "the usage row")[0]
    assert row["stream"] == 1 and row["metered"] in ("reported", "counted")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        usage.prompt_tokens, usage.completion_tokens)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0


def test_a_stream_that_did_not_ask_for_usage_gets_none_but_is_metered(rig):
    store, _, client, _, _ = rig
    before = len(stored_usage(store))
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6,
                                            stream=True))
    assert all(c.usage is None for c in chunks)
    row = wait_until(lambda: stored_usage(store)[before:], "the usage row")[0]
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0


def test_embeddings_are_metered_by_their_prompt_tokens(rig):
    store, _, client, _, _ = rig
    before = len(stored_usage(store))
    result = client.embeddings.create(model=MODEL, input=PROMPT)
    vector = result.data[0].embedding  # llama-cpp-python answers a causal model per token
    assert all(len(v) == 64 for v in (vector if isinstance(vector[0], list) else [vector]))
    row = wait_until(lambda: stored_usage(store)[before:], "the usage row")[0]
    assert (row["endpoint"], row["prompt_tokens"]) == ("embeddings", result.usage.prompt_tokens)


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sk-sunrig-" + "A" * 43,
                                    "Basic c2stc3VucmlnLQ==", "Bearer " + "x" * 10_000,
                                    "bearer sk-sunrig-\u00e9"])
def test_a_missing_or_wrong_key_gets_401_in_openais_shape(rig, header):
    _, _, _, base, _ = rig
    headers = {"Authorization": header.encode()} if header else {}  # UTF-8 on the wire
    resp = httpx.get(base + "/models", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


def test_a_revoked_key_is_refused_at_the_next_request(rig):
    store, _, _, base, _ = rig
    key = add_user(store, "cat", datetime.now(UTC))
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    assert client.models.list().data
    store.revoke_inference_user("cat", datetime.now(UTC))
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.parametrize("model", ["nope", "", "tiny ", None, 7, ["tiny"]])
def test_an_unknown_model_gets_404_in_openais_shape(rig, model):
    _, _, client, base, _ = rig
    resp = httpx.post(base + "/chat/completions", json={"model": model, "messages": []},
                      headers={"Authorization": f"Bearer {client.api_key}"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("body", [b"{", b"[]", b"\xff\xfe", b'"x"', b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_gets_400(rig, body):
    _, _, client, base, _ = rig
    resp = httpx.post(base + "/chat/completions", content=body,
                      headers={"Authorization": f"Bearer {client.api_key}"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"


def test_over_the_rate_limit_gets_429_and_a_retry_after(rig):
    store, inference, _, base, _ = rig
    key = add_user(store, "dan", datetime.now(UTC))
    limiter = inference.gateway.limiter
    auth = {"Authorization": f"Bearer {key}"}
    now = limiter.clock()
    limiter.clock = lambda: now  # the bucket refills with time: hold time still for the test
    for _ in range(int(limiter.capacity)):  # the burst a minute allows, at no cost
        limiter.take("dan")
    resp = httpx.post(base + "/chat/completions", json={"model": MODEL, "messages": []},
                      headers=auth)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(resp.headers["Retry-After"]) >= 1
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=base, api_key=key, max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}])


def test_a_model_whose_server_is_not_ready_gets_503(rig):
    _, inference, client, _, _ = rig
    backend = inference.supervisor.servers[0].backend
    backend.draining = True
    try:
        with pytest.raises(openai.InternalServerError) as exc:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user",
                                                                   "content": "x"}])
        assert exc.value.status_code == 503
        assert exc.value.body["code"] == "model_not_ready"
    finally:
        backend.draining = False


def test_usage_matches_the_books_and_no_prompt_text_is_kept_anywhere(rig, caplog):
    store, inference, client, _, tmp = rig
    caplog.set_level(logging.DEBUG)
    client.chat.completions.create(model=MODEL, max_tokens=4,
                                   messages=[{"role": "user", "content": PROMPT}])
    list(client.chat.completions.create(model=MODEL, max_tokens=4, stream=True,
                                        messages=[{"role": "user", "content": PROMPT}]))
    wait_until(lambda: sum(r["user"] == "ann" for r in stored_usage(store)) >= 2, "usage")
    ann = [u for u in store.inference_users() if u["name"] == "ann"][0]
    rows = [r for r in stored_usage(store) if r["user"] == "ann"]
    assert ann["prompt_tokens"] == sum(r["prompt_tokens"] for r in rows)
    assert ann["completion_tokens"] == sum(r["completion_tokens"] for r in rows)
    book_local_value(store, inference.prices())
    value = store.query("SELECT sum(amount) AS v FROM ledger_daily WHERE category = "
                        "'local_value'")[0]["v"]
    tokens = store.query("SELECT sum(prompt_tokens) AS p, sum(completion_tokens) AS c "
                         "FROM inference_usage")[0]
    assert value == pytest.approx((tokens["p"] * 1.0 + tokens["c"] * 3.0) / 1e6)
    store.db.execute("PRAGMA wal_checkpoint(FULL)")
    for path in tmp.glob("store.db*"):
        assert PROMPT.encode() not in path.read_bytes(), path
    # sunrig's own log lines (the openai client in this process logs its requests itself)
    assert not [r for r in caplog.records
                if r.name.startswith("sunrig") and PROMPT in r.getMessage()]
    assert PROMPT not in json.dumps(inference.view())


def test_the_gateway_keeps_one_connection_to_the_server_across_plain_and_streamed_requests(rig):
    _, inference, client, _, _ = rig
    backend = inference.supervisor.servers[0].backend

    def upstream_ports() -> list[int]:
        # the gateway's thread puts the connection back once it has passed the answer on, which
        # may be a moment after the client has it
        return wait_until(lambda: [c.sock.getsockname()[1] for c in backend._pool
                                   if c.sock is not None], "the connection back in the pool")

    client.chat.completions.create(model=MODEL, max_tokens=2, messages=[
        {"role": "user", "content": "a"}])
    [first] = upstream_ports()
    list(client.chat.completions.create(model=MODEL, max_tokens=4, stream=True, messages=[
        {"role": "user", "content": "b"}]))
    assert upstream_ports() == [first]  # the stream went over the same TCP connection
    client.completions.create(model=MODEL, prompt="c", max_tokens=2)
    assert upstream_ports() == [first]  # and so did the plain completion after it
