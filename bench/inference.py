"""The local inference gateway's cost: latency it adds over calling the server directly (p50,
p99; plain and streamed answers), time to first token through it and direct, and its memory.

Three processes, as on a rig: the upstream is the simulated server (no delay per token) run by
the supervisor as a configured server; the gateway runs in this process, as in the agent; the
client runs in a process of its own and times both paths alike, each on a kept-alive
connection, as the openai client does. What differs between the two paths is the gateway
alone. Goal: under 2 ms added at p50, under 10 ms at p99.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.clock import RealClock  # noqa: E402
from node.config import InferenceConfig, InferenceServerConfig  # noqa: E402
from node.inference.runtime import LocalInference  # noqa: E402
from node.inference.users import add_user  # noqa: E402
from node.storage.store import Store  # noqa: E402

MODEL = "sim"
REQUESTS = 500
WARMUP = 20


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def timed(conn: http.client.HTTPConnection, key: str | None, stream: bool
          ) -> tuple[float, float]:
    """(total ms, ms to the first streamed byte of an answer) of one request."""
    body = json.dumps({"model": MODEL, "stream": stream, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    resp = conn.getresponse()
    first = resp.read1(1)
    ttft = time.perf_counter() - start
    rest = resp.read()
    total = time.perf_counter() - start
    assert resp.status == 200 and first and (rest or first), resp.status
    return total * 1000.0, ttft * 1000.0


def client(direct_port: int, gateway_port: int, key: str, out) -> None:
    """Both paths, interleaved request by request so a busy machine weighs on both alike."""
    results = {}
    for stream in (False, True):
        conns = {p: http.client.HTTPConnection("127.0.0.1", p) for p in (direct_port,
                                                                         gateway_port)}
        runs: dict[int, list] = {direct_port: [], gateway_port: []}
        for k in range(WARMUP + REQUESTS):
            for port, auth in ((direct_port, None), (gateway_port, key)):
                t = timed(conns[port], auth, stream)
                if k >= WARMUP:
                    runs[port].append(t)
        results[stream] = (runs[direct_port], runs[gateway_port])
    out.send(results)


def pct(values: list[float]) -> tuple[float, float]:
    cuts = quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def report(results: dict) -> None:
    for stream in (False, True):
        direct, via = results[stream]
        d50, d99 = pct([t for t, _ in direct])
        g50, g99 = pct([t for t, _ in via])
        kind = "streamed" if stream else "plain"
        print(f"  {kind:<8} direct p50 {d50:6.2f} ms p99 {d99:6.2f} ms; gateway p50 "
              f"{g50:6.2f} ms p99 {g99:6.2f} ms; added p50 {g50 - d50:5.2f} ms, "
              f"p99 {g99 - d99:5.2f} ms")
        if stream:
            t50 = pct([f for _, f in direct])[0], pct([f for _, f in via])[0]
            print(f"  time to first token p50: direct {t50[0]:.2f} ms, gateway "
                  f"{t50[1]:.2f} ms")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        upstream = InferenceServerConfig(model=MODEL, preset="command", gpus=0, parallel=0, args=(
            sys.executable, "-m", "node.inference.simulated", "--port", "{port}", "--model",
            "{model}", "--delay-per-token-s", "0"))
        before = rss_kib()
        inference = LocalInference(InferenceConfig(enabled=True, port=0, servers=(upstream,),
                                                   requests_per_minute=1e6), store,
                                   RealClock()).start()
        backend = inference.supervisor.servers[0].backend
        while not backend.ready:
            time.sleep(0.05)
        key = add_user(store, "bench", datetime.now(UTC))
        print(f"local inference gateway, {REQUESTS} requests each, simulated upstream in a "
              "process of its own, client in another")
        mine, theirs = multiprocessing.get_context("spawn").Pipe()
        proc = multiprocessing.get_context("spawn").Process(
            target=client, args=(backend.port, inference.gateway.port, key, theirs))
        cpu_s = time.process_time()
        proc.start()
        results = mine.recv()
        cpu_s = time.process_time() - cpu_s
        proc.join()
        report(results)
        # this process's CPU (the gateway, its metering and the supervisor's health checks) per
        # request: unlike latency, it does not grow when the machine is busy with other work
        print(f"  gateway CPU: {cpu_s * 1000 / (2 * (REQUESTS + WARMUP)):.2f} ms per request")
        print(f"  memory: {(rss_kib() - before) / 1024:.1f} MiB resident added by the gateway "
              f"after {REQUESTS * 2 + WARMUP * 2} requests through it")
        inference.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
