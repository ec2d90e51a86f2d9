"""Run the agent and its dashboard until SIGINT or SIGTERM, then close everything cleanly."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from werkzeug.serving import make_server

from market_adapter.akash import AkashMarket
from market_adapter.akash_bid_server import BidServer
from node import settings
from node.agent import Agent
from node.books.ledger import book_local_value
from node.books.totals import Totals
from node.clock import Clock, RealClock, SimulatedClock
from node.config import Config, InferencePriceConfig
from node.errors import ConfigError
from node.inference.runtime import LocalInference
from node.inference.view import local_view
from node.sdnotify import notify, watchdog_period_s
from node.status import agent_status, history_view, payback_view, plan_view
from node.storage.backup import StoreLock
from node.storage.store import Store
from node.wiring import akash_bid_server, build_parts, read_secret, tariff_for
from webui.app import create_app
from webui.auth import Auth
from webui.homeassistant import HaPublisher, HaSettings

log = logging.getLogger("sunrig")


def open_agent(cfg: Config, clock: Clock | None = None, speed: float | None = None) -> Agent:
    """Open the store and build the agent. With `speed`, the clock is simulated and resumes
    from the newest stored sample, so a restarted demo carries on where it stopped."""
    store = Store(cfg.store.path, cfg.site.timezone)
    if clock is None:
        if speed is None:
            clock = RealClock()
        else:
            start = max(datetime.now(UTC), store.latest_ts() or datetime.now(UTC))
            clock = SimulatedClock(start, speed)
    # the owner's saved settings first: the parts (the tariff) are built from what applies
    effective = settings.load(store, cfg, clock.now(),
                              usable=lambda saved: _check_saved_tariff(saved, cfg))
    holder: list[Agent] = []
    parts = build_parts(effective, clock, Path(cfg.store.path).parent,
                        rig_power_w=lambda: holder[0].rig_power_w() if holder else 0.0)
    agent = Agent(effective, clock, store, parts)
    holder.append(agent)
    return agent


def _check_saved_tariff(saved: Config, file_cfg: Config) -> None:
    """A saved tariff must still be buildable (its token file readable): else ConfigError, and
    the start falls back rather than failing. The config file's own tariff fails the start as
    any error of the file does."""
    if saved.tariff == file_cfg.tariff:
        return
    tariff = tariff_for(saved)
    if hasattr(tariff, "stop"):  # only built to be checked: let go of its connection
        tariff.stop()


LOCALHOST = ("127.0.0.1", "localhost", "::1")


def serve(cfg: Config, speed: float | None = None, stop: threading.Event | None = None) -> int:
    """Start the agent and the dashboard, wait for a stop signal, shut down; returns exit code."""
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with StoreLock(cfg.store.path):
        return _serve_locked(cfg, speed, stop)


def _serve_locked(cfg: Config, speed: float | None, stop: threading.Event) -> int:
    agent = open_agent(cfg, speed=speed)
    server, ha, bid, inference = None, None, None, None
    # the dashboard answers while the first cycle runs (its plan can take seconds); the status
    # gains the local inference once that starts
    status = [status_with_totals(agent, None)]
    try:
        if cfg.webui.enabled:
            local = cfg.webui.host in LOCALHOST
            app = create_app(lambda: status[0](),
                             Auth(Path(cfg.store.path).parent),
                             open_reading=local, views=views_for(agent),
                             actions={"settings": lambda body: _change(agent, body)})
            server = make_server(cfg.webui.host, cfg.webui.port, app, threaded=True)
            threading.Thread(target=server.serve_forever, name="webui", daemon=True).start()
            log.info("dashboard on http://%s:%d", cfg.webui.host, cfg.webui.port)
        agent.start()
        bid = start_bid_server(agent)
        inference = start_local_inference(agent, stop)
        status[0] = status_with_totals(agent, inference)
        ha = _home_assistant(cfg, agent, status[0])
        log.info("agent running (%d GPUs, markets: %s)", len(agent.state.gpus),
                 ", ".join(agent.parts.markets) or "none")
        notify(f"READY=1\nSTATUS=running, {len(agent.state.gpus)} GPUs")
        _watch(agent, stop)
        log.info("stopping")
    finally:
        notify("STOPPING=1")
        if server is not None:
            server.shutdown()
        if ha is not None:
            ha.stop()
        if bid is not None:
            bid.stop()
        if inference is not None:
            inference.stop()
        agent.stop()
        agent.store.close()
    return 0


def start_bid_server(agent: Agent) -> BidServer | None:
    """The Akash bid endpoint, once the agent has made its first offer; None without Akash."""
    market = agent.parts.markets.get("akash")
    if not isinstance(market, AkashMarket):
        return None
    return akash_bid_server(agent.cfg, market, agent.parts.akash_share).start()


INFERENCE_SYNC_S = 5.0  # real seconds between handing servers the local GPUs and booking value


def start_local_inference(agent: Agent, stop: threading.Event) -> LocalInference | None:
    """The owner's inference servers and gateway, fed the local GPUs (never one that holds a
    lease) and booked at the reference prices until `stop`; None where [inference] is off."""
    if not agent.cfg.inference.enabled:
        return None
    inference = LocalInference(agent.cfg.inference, agent.store, agent.clock).start()
    agent.local_demand = inference.demand  # the gateway's queue moves the local reservation

    def sync() -> None:
        while True:
            try:
                inference.set_gpus(*local_gpu_uuids(agent))
                book_local_value(agent.store, inference.prices())
            except Exception:  # one failed pass must not end the feeding of the servers
                log.exception("local inference: GPU hand-over or booking failed")
            if stop.wait(INFERENCE_SYNC_S):
                return

    threading.Thread(target=sync, name="local-inference", daemon=True).start()
    return inference


def local_gpu_uuids(agent: Agent) -> tuple[list[str], list[str]]:
    """The UUIDs of the GPUs local now, and of those that hold a lease."""
    local, leased = [], []
    for index, a in sorted(agent.state.assignments.items()):
        snap = agent.state.gpus.get(index)
        if snap is None or not snap.uuid:
            continue
        if a.lease_id is not None:
            leased.append(snap.uuid)
        elif a.role == "local":
            local.append(snap.uuid)
    return local, leased


def views_for(agent: Agent) -> dict:
    """The dashboard's read-only JSON views, each given the request's query arguments."""
    return {"plan": lambda args: plan_view(agent),
            "settings": lambda args: settings.current(agent.cfg),
            "history": lambda args: history_view(agent, args),
            "payback": lambda args: payback_view(agent),
            "local": lambda args: local_view(agent.store, args, agent.clock.now())}


def _change(agent: Agent, body: dict) -> dict:
    try:
        return {"ok": True, **agent.change_settings(body)}
    except ConfigError as exc:
        return settings.error_answer(exc)


def status_with_totals(agent: Agent, inference: LocalInference | None) -> Callable[[], dict]:
    """The agent's status with the store's lifetime totals, one source for the metrics'
    counters and Home Assistant's lifetime sensors."""
    totals = Totals(agent.store)
    return lambda: agent_status(agent, inference) | {"lifetime": totals.lifetime()}


def _home_assistant(cfg: Config, agent: Agent,
                    status: Callable[[], dict] | None = None) -> HaPublisher | None:
    h = cfg.homeassistant
    if not h.enabled:
        return None
    status = status or status_with_totals(agent, None)
    password = read_secret(h.password_file, "homeassistant.password_file",
                           "the MQTT password") if h.password_file else ""
    return HaPublisher(HaSettings(h.mqtt_host, h.mqtt_port, h.username, password,
                                  h.discovery_prefix, h.node_id, h.every_s,
                                  cfg.site.timezone), status).start()


def _watch(agent: Agent, stop: threading.Event) -> None:
    """Until stopped, feed systemd's watchdog while the agent's jobs are healthy."""
    period = watchdog_period_s()
    fed = True
    while not stop.wait(period if period else None):
        ok = agent.watchdog_ok()
        if ok:
            notify("WATCHDOG=1")
        if ok and not fed:
            log.info("watchdog: jobs healthy again")
            notify("STATUS=running")
        elif fed and not ok:
            failing = ", ".join(n for n, h in agent.state.jobs.items()
                                if h.internal_error or not h.ok) or "a job stopped running"
            log.warning("watchdog: not notifying, jobs unhealthy: %s", failing)
            notify(f"STATUS=unhealthy: {failing}")
        fed = ok


def demo_inference(cfg: Config, port: int) -> Config:
    """The demo serves the local inference gateway on `port`: the configured servers, or on
    a config with none, a simulated one, labelled so."""
    simulated = cfg.inference.simulated or not cfg.inference.servers
    prices = cfg.inference.prices
    if simulated and not prices:  # what a small hosted model costs, so the books show value
        prices = (InferencePriceConfig(cfg.inference.simulated_model, 0.15, 0.60),)
    inf = replace(cfg.inference, enabled=True, port=port, simulated=simulated, prices=prices)
    return replace(cfg, inference=inf)


def demo_config(base: Config, data_dir: Path, port: int) -> Config:
    """The demo's config (the embedded default or a given file) with its own store and port;
    the demo always runs the simulated market, whatever the file says of it."""
    store = replace(base.store, path=str((data_dir / "sunrig-demo.db").resolve()))
    markets = replace(base.markets, sim=replace(base.markets.sim, enabled=True,
                                                allow_simulated=True))
    return replace(base, store=store, webui=replace(base.webui, port=port), markets=markets)
