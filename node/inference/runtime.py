"""Local inference as one part of the agent: its servers, the gateway, and their state as data.

The service starts it, tells it which GPUs are local now, and stops it. Each request's `Usage`
is counted in memory for the Prometheus counters and the latency percentiles at once, and
written to the store by a thread of its own (ts on the agent's clock, so a simulated demo books
on its own days): a disk write is never part of a request's latency. Each request's wait for a
free slot feeds the local demand (`demand.LocalDemand`).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from node.books.ledger import TokenPrice
from node.clock import Clock
from node.errors import ConfigError
from node.inference.backend import Backend
from node.inference.demand import DemandRule, LocalDemand
from node.inference.gateway import Gateway, RateLimiter
from node.inference.metering import Usage, latency_percentiles
from node.inference.settings import check_inference
from node.inference.simulated import SimulatedServer
from node.inference.supervisor import Supervisor
from node.inference.users import KeyDirectory
from node.storage.store import Store, epoch

log = logging.getLogger("sunrig.inference")

LATENCY_WINDOW = 1000  # requests per model the percentiles are taken over
WRITE_EVERY_S = 0.2  # usage rows are written this long after the first of them came


class LocalInference:
    def __init__(self, cfg: Any, store: Store, clock: Clock):
        check_inference(cfg, "inference")
        tls = _tls(cfg)  # before anything starts: a bad certificate leaves nothing running
        self.cfg, self.store, self.clock = cfg, store, clock
        self.supervisor = Supervisor(cfg.servers, cfg.drain_s)
        self.simulated: SimulatedServer | None = None
        self._backends = self.supervisor.backends()
        if cfg.simulated:
            self.simulated = SimulatedServer(cfg.simulated_model).start()
            sim = Backend(cfg.simulated_model, port=self.simulated.port, simulated=True)
            sim.ready = True
            self._backends[cfg.simulated_model] = sim
        self.keys = KeyDirectory(store)
        self.demand = LocalDemand(DemandRule.of(cfg))
        self._rows: queue.Queue[dict | None] = queue.Queue()
        self._stopping = threading.Event()
        self._writer = threading.Thread(target=self._write_rows, name="inference-usage",
                                        daemon=True)
        self.totals: dict[tuple[str, str], dict[str, float]] = {}
        self._latency: dict[str, deque] = {}
        self._lock = threading.Lock()
        self.gateway = Gateway(lambda: self._backends, self.keys,
                               RateLimiter(cfg.requests_per_minute), self.meter,
                               cfg.host, cfg.port, tls)

    def start(self) -> LocalInference:
        self._writer.start()
        self.supervisor.start()
        self.gateway.start()
        scheme = "https" if self.gateway.tls else "http"
        log.info("local inference gateway on %s://%s:%d/v1 (%s)", scheme, self.cfg.host,
                 self.gateway.port, ", ".join(sorted(self._backends)) or "no models")
        return self

    def stop(self) -> None:
        self.gateway.stop()
        self._stopping.set()
        self._rows.put(None)  # what was metered is written before the store closes
        if self._writer.is_alive():
            self._writer.join()
        self.supervisor.stop()
        if self.simulated is not None:
            self.simulated.stop()
        self.keys.close()

    def set_gpus(self, local_uuids: Iterable[str], leased_uuids: Iterable[str]) -> None:
        self.supervisor.set_gpus(local_uuids, leased_uuids)

    def prices(self) -> dict[str, TokenPrice]:
        return {p.model: TokenPrice(p.input_per_million_tokens, p.output_per_million_tokens)
                for p in self.cfg.prices}

    def meter(self, usage: Usage) -> None:
        """Keep one request's usage: a row in the store and the in-memory counters."""
        now = self.clock.now()
        row = {"ts": epoch(now), "day": self.store.local_day(now), **vars(usage)}
        row["stream"] = int(usage.stream)
        del row["queue_ms"]  # not a column: it feeds the demand only
        self._rows.put(row)
        if usage.status < 400 or usage.queue_ms:
            self.demand.observe(usage.queue_ms / 1000.0)
        elif usage.status == 503 and self._starved(usage.model):
            self.demand.observe(float("inf"))  # refused for want of a GPU: the longest wait
        with self._lock:
            t = self.totals.setdefault((usage.user, usage.model), {
                "requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0})
            t["requests"] += 1
            t["errors"] += usage.status >= 400
            t["prompt_tokens"] += usage.prompt_tokens
            t["completion_tokens"] += usage.completion_tokens
            if usage.status < 400:
                self._latency.setdefault(usage.model, deque(maxlen=LATENCY_WINDOW)).append(
                    usage.latency_ms)

    def _starved(self, model: str) -> bool:
        backend = self._backends.get(model)
        return backend is not None and backend.starved

    def _write_rows(self) -> None:
        """Usage rows into the store, those of up to WRITE_EVERY_S at once: a busy gateway
        makes one transaction a beat, not one per request. Until stop() says None."""
        while True:
            rows = [self._rows.get()]
            if rows[0] is not None:
                self._stopping.wait(WRITE_EVERY_S)
            while rows[-1] is not None and not self._rows.empty():
                rows.append(self._rows.get())
            done = rows[-1] is None
            rows = [r for r in rows if r is not None]
            try:
                if rows:
                    self.store.add_inference_usage(rows)
            except Exception:  # a full disk must not end the metering of later requests
                log.exception("cannot store %d requests' usage", len(rows))
            if done:
                return

    def view(self) -> dict[str, Any]:
        """Plain data for `sunrig status`, the metrics and the dashboard's Local AI page."""
        servers = self.supervisor.view()
        if self.simulated is not None:
            servers.append({"model": self.cfg.simulated_model, "preset": "simulated",
                            "state": "ready", "simulated": True, "port": self.simulated.port,
                            "gpu_uuids": [], "gpus_wanted": 0, "inflight": 0, "restarts": 0,
                            "last_exit": None})
        with self._lock:
            usage = [{"user": u, "model": m, **{k: int(v) for k, v in t.items()}}
                     for (u, m), t in sorted(self.totals.items())]
            latency = {m: latency_percentiles(list(d))
                       for m, d in sorted(self._latency.items())}
            rejected = [{"user": u, "model": m, "status": s, "count": n}
                        for (u, m, s), n in sorted(self.gateway.rejected.items())]
        return {"enabled": True, "url": f"{'https' if self.gateway.tls else 'http'}://"
                f"{self.cfg.host}:{self.gateway.port}/v1", "servers": servers,
                "usage_since_start": usage, "rejected_since_start": rejected,
                "latency_ms": latency, "demand": self.demand.view(),
                "prices": {m: asdict(p) for m, p in self.prices().items()}}


def _tls(cfg: Any) -> ssl.SSLContext | None:
    if not cfg.tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    except (OSError, ssl.SSLError) as exc:  # never the key's contents: only what failed
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unreadable"
        raise ConfigError("inference", "inference.tls_cert_file", "cannot load the "
                          f"certificate with inference.tls_key_file: {reason}") from None
    return context
