"""The local inference gateway's cost: latency it adds over calling the server directly (p50,
p99; plain and streamed answers), time to first token through it and direct, and its memory.

The upstream is the simulated server with no delay per token, so what differs between the two
paths is the gateway alone. Goal: under 2 ms added at p50, under 10 ms at p99.
"""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.clock import RealClock  # noqa: E402
from node.config import InferenceConfig  # noqa: E402
from node.inference.runtime import LocalInference  # noqa: E402
from node.inference.users import add_user  # noqa: E402
from node.store import Store  # noqa: E402

MODEL = "sunrig-simulated"
REQUESTS = 300


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def timed(port: int, key: str | None, stream: bool) -> tuple[float, float]:
    """(total ms, ms to the first streamed byte of an answer) of one request."""
    body = json.dumps({"model": MODEL, "stream": stream, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    resp = conn.getresponse()
    first = resp.read1(1)
    ttft = time.perf_counter() - start
    rest = resp.read()
    total = time.perf_counter() - start
    conn.close()
    assert resp.status == 200 and first and (rest or first), resp.status
    return total * 1000.0, ttft * 1000.0


def pct(values: list[float]) -> tuple[float, float]:
    cuts = quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        before = rss_kib()
        inference = LocalInference(InferenceConfig(enabled=True, port=0, simulated=True,
                                                   requests_per_minute=1e6), store,
                                   RealClock()).start()
        inference.simulated.delay_per_token_s = 0.0
        key = add_user(store, "bench", datetime.now(UTC))
        direct_port, gateway_port = inference.simulated.port, inference.gateway.port
        print(f"local inference gateway, {REQUESTS} requests each, simulated upstream")
        for stream in (False, True):
            direct = [timed(direct_port, None, stream) for _ in range(REQUESTS)]
            via = [timed(gateway_port, key, stream) for _ in range(REQUESTS)]
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
        print(f"  memory: {(rss_kib() - before) / 1024:.1f} MiB resident added by the gateway "
              f"and the simulated server, {REQUESTS * 4} requests served")
        inference.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
