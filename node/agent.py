"""The agent: one scheduled job per source and per decision, sharing one clock and one store.

Jobs run under APScheduler with max_instances=1 and coalesce=True; a job that fails is logged
when it starts failing and when it recovers, and runs again at its next interval, while the
other jobs carry on. Intervals are in simulated seconds, so a fast clock runs them faster.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from energy.redact import redact
from energy.types import SiteSample, SourceUnavailable
from market_adapter.base import ACTIVE, Capacity, Market, MarketError
from node import settings
from node.books import rollups
from node.books.ledger import RigEnergy, book_energy, book_payouts
from node.clock import Clock, real_seconds
from node.cluster.kube import KubeError, gpus_off_market
from node.cluster.podresources import physical
from node.config import Config
from node.gpus import GpuError, GpuSnapshot
from node.planning.inputs import FillTracker, learned_terms, plan_inputs
from node.planning.milp import MilpPlanner
from node.planning.planner import Plan, PlanInputs, RulePlanner
from node.planning.projection import YearProjection
from node.powercap.client import may_set
from node.roles import (
    LOCAL,
    Assignment,
    LeaseHold,
    assign_roles,
    power_limit_for,
    reserved_local_gpus,
)
from node.storage.store import Store, epoch
from node.tee_gate import PREFLIGHT_EVERY_S, gated_offer

if TYPE_CHECKING:
    from node.inference.demand import LocalDemand
from node.wiring import Parts, still_needs, tariff_for
from tee.attest import attest
from tee.evidence import CcState, TeeError, Verdict

log = logging.getLogger("sunrig.agent")


@dataclass
class JobHealth:
    ok: bool = True
    last_ok: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    last_run_monotonic: float | None = None  # real time, for the watchdog
    internal_error: bool = False  # failing for a reason of our own, not the outside world


@dataclass
class LiveState:
    site: SiteSample | None = None
    gpus: dict[int, GpuSnapshot] = field(default_factory=dict)
    assignments: dict[int, Assignment] = field(default_factory=dict)
    plan: Plan | None = None
    limits_tried_w: dict[int, float] = field(default_factory=dict)  # set, or refused once
    jobs: dict[str, JobHealth] = field(default_factory=dict)
    reservation_short: int = 0
    tee_state: CcState | None = None
    tee_verdict: Verdict | None = None
    tee_checked: datetime | None = None
    tee_message: str | None = None
    fills: FillTracker = field(default_factory=FillTracker)
    prices_seen: dict = field(default_factory=dict)  # published prices the last plan used
    markets_down: frozenset[str] = frozenset()  # failed their last sync: planned out
    plan_inputs: PlanInputs | None = None

    @property
    def tee_ok(self) -> bool:
        """The host's own NVML attestation passed: an operator diagnostic, never what markets are
        told (the host preflight's gate decides tee/type)."""
        return self.tee_verdict is not None and self.tee_verdict.passed


class Agent:
    def __init__(self, cfg: Config, clock: Clock, store: Store, parts: Parts):
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.parts = parts
        p = cfg.planner
        self.planner = (MilpPlanner(p.horizon_hours, p.slot_minutes, p.solve_time_limit_s)
                        if p.kind == "milp" else RulePlanner(p.horizon_hours, p.slot_minutes))
        self.state = LiveState()
        self._lock = threading.RLock()
        self._scheduler: BackgroundScheduler | None = None
        self._arming = threading.Lock()  # a job re-arms itself, or stop() takes the scheduler
        self.projection = YearProjection(store)
        self.local_demand: LocalDemand | None = None  # set by the service where [inference] runs
        store.sync_cost_items(_cost_rows(cfg))  # the config is the source of CapEx and OpEx
        a = cfg.agent
        self.jobs: dict[str, tuple[Callable[[], None], float]] = {
            "prices": (self.refresh_prices, a.plan_every_s),
            "sample_site": (self.sample_site, a.site_poll_s),
            "sample_gpus": (self.sample_gpus, a.gpu_poll_s),
            "plan": (self.make_plan, a.plan_every_s),
            "apply_roles": (self.apply_roles, a.apply_every_s),
            "sync_markets": (self.sync_markets, a.market_sync_s),
            "ledger": (self.book_ledger, a.ledger_every_s),
            "maintenance": (self.maintenance, a.maintenance_every_s),
            "attest": (self.attest_tee, cfg.tee.attest_every_s),
            "cc_preflight": (self.preflight_tee, PREFLIGHT_EVERY_S),
            "kube_split": (self.split_on_kube, a.apply_every_s),
            "project_payback": (self.project_payback, a.plan_every_s),
        }
        if parts.site is None:  # no site source configured: nothing to read, nothing failing
            del self.jobs["sample_site"]
        if parts.tee_gate is None:  # a rig that never sells confidential GPUs
            del self.jobs["cc_preflight"]

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Run every job once, in order, then hand them to the scheduler."""
        self.store.add_event(self.clock.now(), "agent", "agent started")
        for need in still_needs(self.cfg):
            log.warning("still needs configuring: %s", need)
        self.run_all_once()
        self._scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": None})
        self._scheduler.start()
        for name in self.jobs:
            self._arm(self._scheduler, name)

    def stop(self) -> None:
        with self._arming:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)  # let running jobs finish their transaction
        self.projection.stop()
        self.run_job("ledger")  # leave nothing sampled unbooked
        self.store.add_event(self.clock.now(), "agent", "agent stopped")
        self.parts.close()

    def run_all_once(self) -> None:
        for name in self.jobs:
            self.run_job(name)

    def _arm(self, scheduler: BackgroundScheduler, name: str) -> None:
        """Schedule a job's next run one interval after its last run ended. At a fast clock a
        job can take longer than its interval (a plan's solve, a wait for the agent's lock);
        on a fixed rate its next runs would come due while it still runs, each one skipped
        with a warning. From its end, a slow job simply runs less often."""
        due = datetime.now(UTC) + timedelta(seconds=real_seconds(self.clock, self.jobs[name][1]))
        # Never once stop() has taken the scheduler: its shutdown holds the job store's lock
        # while it waits for running jobs, so a job adding itself then would wait forever.
        with self._arming:
            if scheduler is self._scheduler:
                # a fresh id per run: the scheduler counts running instances by id, and this
                # run's count may not yet be cleared when the next one comes due
                scheduler.add_job(self._run_scheduled, DateTrigger(due),
                                  args=[scheduler, name], name=name)

    def _run_scheduled(self, scheduler: BackgroundScheduler, name: str) -> None:
        try:
            self.run_job(name)
        finally:
            self._arm(scheduler, name)

    def run_job(self, name: str) -> bool:
        """Run one job; failures are recorded and logged on change, never raised."""
        fn = self.jobs[name][0]
        health = self.state.jobs.setdefault(name, JobHealth())
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failing job must not stop the others
            health.last_run_monotonic = time.monotonic()
            why = redact(exc)  # shown on the dashboard and kept: never with a secret in it
            if health.ok:
                log.warning("job %s failing: %s", name, why, exc_info=not _expected(exc))
                self._event_quietly("job", f"{name} failing: {why}")
            health.ok, health.last_error = False, f"{type(exc).__name__}: {why}"
            health.internal_error = not _expected(exc)
            health.failures += 1
            return False
        health.last_run_monotonic = time.monotonic()
        health.internal_error = False
        if not health.ok:
            log.info("job %s recovered", name)
            self._event_quietly("job", f"{name} recovered")
        health.ok, health.last_ok = True, self.clock.now()
        return True

    def healthy(self) -> bool:
        return all(h.ok for h in self.state.jobs.values())

    def watchdog_ok(self, slack: float = 3.0, floor_s: float = 30.0) -> bool:
        """Whether systemd's watchdog should be fed: every job ran lately and none is failing
        for a reason of our own. A source or market that is down is the outside world's
        failure: it makes data stale, and a restart would not mend it."""
        now = time.monotonic()
        for name, (_, interval_s) in self.jobs.items():
            health = self.state.jobs.get(name)
            if health is None or health.last_run_monotonic is None or health.internal_error:
                return False
            if now - health.last_run_monotonic > max(slack * real_seconds(self.clock,
                                                                          interval_s), floor_s):
                return False
        return True

    def _event_quietly(self, kind: str, message: str) -> None:
        """Record an event unless the store itself is what fails."""
        try:
            self.store.add_event(self.clock.now(), kind, message)
        except Exception as exc:  # noqa: BLE001
            log.error("cannot record event %r: %s", message, exc)

    # --- sources --------------------------------------------------------------------------------
    def rig_power_w(self) -> float:
        """What the rig draws now, as the site meter sees it: GPUs, host, cooling."""
        gpu_w = sum(s.power_w or 0.0 for s in self.state.gpus.values())
        return (gpu_w + self.cfg.site.host_overhead_w) * self.cfg.site.cooling_factor

    def sample_site(self) -> None:
        try:
            sample = self.parts.site.read(self.clock.now())
        except SourceUnavailable:
            if self.state.site is not None and not self.state.site.stale:
                # shown as stale, never as if current; nothing is stored for the gap
                self.state.site = replace(self.state.site, stale=True)
            raise
        self.store.add_site_sample(sample)
        self.state.site = sample  # only what is stored is shown

    def sample_gpus(self) -> None:
        now = self.clock.now()
        snaps = self.parts.backend.snapshots(now)
        rows = []
        for snap in snaps:
            prev = self.state.gpus.get(snap.index)
            role = self.state.assignments.get(snap.index)
            interval_s, energy_wh = _interval_energy(prev, snap)
            rows.append({"ts": epoch(now), "gpu_index": snap.index, "uuid": snap.uuid,
                         "role": role.role if role else None, "power_w": snap.power_w,
                         "energy_wh": snap.energy_total_wh, "util_pct": snap.util_pct,
                         "memory_used_bytes": snap.memory_used_bytes, "temp_c": snap.temp_c,
                         "interval_s": interval_s, "interval_energy_wh": energy_wh})
        self.state.gpus = {s.index: s for s in snaps}
        self.store.add_gpu_samples(rows)

    def refresh_prices(self) -> None:
        now = self.clock.now()
        slots = self.parts.tariff.slots(now - timedelta(hours=1),
                                        now + timedelta(hours=self.cfg.planner.horizon_hours))
        if not slots:
            raise SourceUnavailable("the tariff has no prices for the coming hours")
        self.store.put_price_slots(slots)
        if self.state.plan is not None and _prices_changed(self.state.prices_seen, slots):
            self.make_plan()  # new prices (tomorrow's published): re-plan now, not in 15 min

    # --- decisions ------------------------------------------------------------------------------
    def make_plan(self) -> None:
        now = self.clock.now()
        inputs = self._plan_inputs(now)
        plan = self.planner.plan(now, inputs)
        self.state.prices_seen = {r["start"]: (r["import_per_kwh"], r["export_per_kwh"], r["end"])
                                  for r in self.store.price_slots(now, now + timedelta(
                                      hours=self.cfg.planner.horizon_hours))}
        rows = [{"start": epoch(s.start), "end": epoch(s.end), "market": m,
                 "gpus_offered": n, "floor_per_gpu_hour": s.floor_per_gpu_hour[m],
                 "local_gpus": s.local_gpus, "parked_power_cap_w": s.parked_power_cap_w,
                 "expected_margin": s.expected_margin}
                for s in plan.slots for m, n in s.offered.items()]
        self.store.put_plan(now, plan.planner, rows)
        self.state.plan = plan
        self.state.plan_inputs = inputs  # the forecasts the plan was made with, for the page

    def _plan_inputs(self, now: datetime) -> PlanInputs:
        up = {k: v for k, v in self.parts.terms.items() if k not in self.state.markets_down}
        terms = learned_terms(self.store, up, now, self.state.fills)
        return plan_inputs(self.cfg, self.store, terms, now, list(self.state.gpus.values()),
                           self.state.site, self.parts.gpu_busy_w, self._reserved_at)

    def _reserved_at(self, ts: datetime) -> int:
        """The owner's schedule, raised by local demand (the gateway's queue) for as long as
        that lasts at the least, within [inference] min/max local GPUs."""
        ts_local = ts.astimezone(self.store.tz)
        inference = self.cfg.inference
        bounds = ((inference.min_local_gpus, inference.max_local_gpus) if inference.enabled
                  else None)
        demand = self.local_demand
        if demand is None:
            return reserved_local_gpus(self.cfg.local, ts_local, 0, bounds)
        now = self.clock.now()
        wanted = demand.wanted(reserved_local_gpus(self.cfg.local, now.astimezone(self.store.tz)))
        soon = ts < now + timedelta(seconds=demand.rule.quiet_for_s)
        return reserved_local_gpus(self.cfg.local, ts_local, wanted if soon else 0, bounds)

    def apply_roles(self) -> None:
        with self._lock:
            now = self.clock.now()
            slot = self.state.plan.slot_at(now) if self.state.plan else None
            offered = dict(slot.offered) if slot else dict.fromkeys(self.parts.markets, 0)
            holds = [LeaseHold(r["market"], r["lease_id"], r["gpus"], tuple(r["gpu_indexes"]))
                     for r in self.store.leases(ACTIVE)]
            # which pod really holds which GPU, from the kubelet's last answer: it wins over
            # the plan's counts, and caps and energy per role follow it
            split = self.parts.kube.last if self.parts.kube is not None else None
            held = None
            if split is not None and split.holders is not None:
                held = physical(split.holders, {g.uuid: i for i, g in self.state.gpus.items()})
            result = assign_roles(sorted(self.state.gpus), self._reserved_at(now), offered,
                                  holds, self.state.assignments, held)
            for (market, lease_id), idx in result.new_lease_gpus.items():
                self.store.assign_lease_gpus(market, lease_id, list(idx))
            for lease_id in result.unplaced_leases:
                log.warning("lease %s has no free GPUs to run on", lease_id)
            self.state.assignments = {a.index: a for a in result.assignments}
            self._share_for_bids(slot, offered)
            self._note_reservation(now, result)
            self._apply_power_and_workload()
            for name, market in self.parts.markets.items():
                if slot is None or name not in slot.floor_per_gpu_hour:
                    self._offer(market, 0, 0.0)  # no plan for now, or this market is down
                    continue
                free = result.free_offered.get(name, 0)
                floor = self._offer(market, free, slot.floor_per_gpu_hour[name])
                self.state.fills.offered(name, now, floor, free)

    def _share_for_bids(self, slot, offered: dict[str, int]) -> None:
        """Akash's share of the plan now, and what its leases hold, for its bid endpoint."""
        share = self.parts.akash_share
        if share is not None:
            planned = offered.get("akash", 0) if slot and "akash" in slot.floor_per_gpu_hour else 0
            share.update(planned, self._leased_gpus().get("akash", 0))

    def _leased_gpus(self) -> dict[str, int]:
        """GPUs each market's leases hold, as roles placed them."""
        out: dict[str, int] = {}
        for a in self.state.assignments.values():
            if a.market is not None and a.lease_id is not None:
                out[a.market] = out.get(a.market, 0) + 1
        return out

    def _note_reservation(self, now: datetime, result) -> None:
        """Say once when leases keep the owner from the GPUs reserved, and once when resolved."""
        short = max(0, self._reserved_at(now) - len(result.by_role(LOCAL)))
        if short != self.state.reservation_short:
            if short:
                message = f"local reservation short by {short} GPU(s): held by running leases"
                log.warning(message)
            else:
                message = "local reservation met again"
                log.info(message)
            self.store.add_event(now, "roles", message)
            self.state.reservation_short = short

    def _offer(self, market: Market, gpus: int, floor_site: float) -> float:
        """Offer free GPUs at the floor, converted from site to market currency. Confidential
        capacity (while the host preflight passes) carries the premium: CC mode costs tenants
        about that much throughput."""
        snap = next(iter(self.state.gpus.values()), None)
        memory_gib = (snap.memory_total_bytes or 0) / 2**30 if snap else 0.0
        floor_site, tee = gated_offer(self.parts.tee_gate, floor_site, self.cfg.tee.premium_pct)
        market.offer(Capacity(gpus, self.parts.gpu_model, round(memory_gib, 1), tee=tee),
                     floor_site / market.currency_rate)
        return floor_site

    def _apply_power_and_workload(self) -> None:
        backend = self.parts.backend
        place = getattr(backend, "place_workload", None)
        for index, a in self.state.assignments.items():
            snap = self.state.gpus.get(index)
            if place is not None:
                place(index, "lease" if a.lease_id else ("local" if a.role == LOCAL else "idle"))
            if snap is None:
                continue
            target = power_limit_for(a.role, snap.power_limit_min_w, snap.power_limit_default_w)
            if target is None or self.state.limits_tried_w.get(index) == target:
                continue
            if not may_set(a.lease_id, target, snap.power_limit_default_w):
                continue  # a GPU that holds a lease is never capped
            self.state.limits_tried_w[index] = target  # a refusal is logged once, not every minute
            try:
                backend.set_power_limit(index, target)
            except GpuError as exc:
                log.warning("GPU %d: cannot set power limit %.0f W: %s", index, target, exc)

    def project_payback(self) -> None:
        """Start or collect the year simulation behind the payback page's second projection."""
        self.projection.poll(self.cfg, self.clock.now())

    def change_settings(self, changes: dict) -> dict:
        """Apply the owner's change now, keep it, log it; ConfigError names a wrong key.

        Whatever can refuse the change runs before anything is kept: the whole change is
        checked and a new tariff built. Then the settings, the CapEx and OpEx items and the
        event are kept in one transaction, and only then does the agent switch to them, so a
        refused change leaves nothing behind, in the store or in the running agent."""
        with self._lock:
            new = settings.apply(self.cfg, changes)
            # a token file the new tariff cannot read is the owner's error to see now, not a
            # config that fails at the next start
            tariff = tariff_for(new) if new.tariff != self.cfg.tariff else None
            try:
                self._keep_settings(new)
            except BaseException:
                self._stop_tariff(tariff)
                raise
            self.cfg = new
            if tariff is not None:
                old, self.parts.tariff = self.parts.tariff, tariff
                self._stop_tariff(old)
        self.run_job("prices")  # a new tariff's prices, before the plan uses them
        self.run_job("plan")  # the new reservation or floors count from now
        self.run_job("apply_roles")
        return settings.current(new)

    def _keep_settings(self, new: Config) -> None:
        """The owner's settings, the books' cost items and the event, all or none."""
        changed = settings.changes_between(self.cfg, new)
        with self.store.transaction():
            settings.save(self.store, self.cfg, new)
            self.store.sync_cost_items(_cost_rows(new))  # CapEx and OpEx as the owner set them
            if changed:
                self.store.add_event(self.clock.now(), "settings",
                                     "settings changed: " + "; ".join(changed))

    @staticmethod
    def _stop_tariff(tariff: object) -> None:
        if hasattr(tariff, "stop"):  # a feed with its own connection (MQTT prices)
            tariff.stop()

    def split_on_kube(self) -> None:
        """Keep off the market, as pods on Kubernetes, every GPU the plan does not offer now."""
        if self.parts.kube is None:
            return
        kube = self.parts.kube
        slot = self.state.plan.slot_at(self.clock.now()) if self.state.plan else None
        planned = dict(slot.offered) if slot else {}
        before = kube.last.holders if kube.last is not None else None
        split = kube.keep(gpus_off_market(len(self.state.gpus), planned, self._leased_gpus()))
        for message in split.replaced:  # each rejected hold pod once: it is gone after this
            self.store.add_event(self.clock.now(), "kube", message)
        if split.holders != before:
            self.apply_roles()  # a tenant took a GPU, or let one go: roles and caps follow now

    # --- markets and books ----------------------------------------------------------------------
    def sync_markets(self) -> None:
        known = {(r["market"], r["lease_id"]): r["state"] for r in self.store.leases()}
        changed, failed, down = False, [], set()
        for name, market in self.parts.markets.items():
            try:
                changed |= self._sync_market(name, market, known)
            except MarketError as exc:  # one market down must not keep the others unsynced
                failed.append(str(exc))
                down.add(name)
        if frozenset(down) != self.state.markets_down:
            # a market that cannot be read gets no new GPUs: plan them for the others now
            self.state.markets_down = frozenset(down)
            self.make_plan()
        if changed:
            self.apply_roles()  # give new leases their GPUs now, not at the next interval
        if failed:
            raise MarketError("; ".join(failed))

    def _sync_market(self, name: str, market: Market, known: dict) -> bool:
        """Store one market's leases and new payouts; True when a lease started or ended."""
        rate = market.currency_rate
        leases = market.leases()
        rows = [{"market": le.market, "lease_id": le.lease_id, "gpus": le.gpus,
                     "price_per_gpu_hour": round(le.price_per_gpu_hour * rate, 6),
                     "state": le.state, "started": epoch(le.started),
                 "ended": epoch(le.ended) if le.ended else None} for le in leases]
        self.store.upsert_leases(rows)
        changed, started = False, 0
        for le in leases:
            before = known.get((le.market, le.lease_id))
            if before != le.state:
                changed = True
                self._lease_event(le, before)
            if before is None and le.state == ACTIVE:
                started += le.gpus
        if name in self.parts.terms:
            self.state.fills.synced(name, self.clock.now(), self.parts.terms[name], started)
            self._follow_listed_price(name, market)
        book_payouts(self.store, market.payouts(self.store.last_payout_ts(name)), rate)
        return changed

    def _follow_listed_price(self, name: str, market: Market) -> None:
        """Where the market lists a price for this rig's GPUs (Hyperbolic), the planner expects
        that price rather than the configured one."""
        read = getattr(market, "reference_prices", None)
        if read is None:
            return
        usd = read().get(self.parts.gpu_model)
        if usd:
            self.parts.terms[name] = replace(self.parts.terms[name],
                                             expected_price_per_gpu_hour=usd
                                             * market.currency_rate)

    def _lease_event(self, lease, before: str | None) -> None:
        verb = "started" if lease.state == ACTIVE else ("ended" if before else "seen ended")
        self.store.add_event(self.clock.now(), "lease",
                             f"{lease.market} lease {lease.lease_id} {verb}: {lease.gpus} GPU(s) "
                             f"at {lease.price_per_gpu_hour:.2f}/GPU-hour",
                             {"market": lease.market, "lease_id": lease.lease_id})

    def book_ledger(self) -> None:
        book_energy(self.store, self.clock.now(),
                    RigEnergy(self.cfg.site.host_overhead_w, self.cfg.site.cooling_factor))

    def attest_tee(self) -> None:
        """Read the CC mode and, when it is on, attest with a fresh nonce and verify offline."""
        source = self.parts.tee
        if source is None:
            return
        now = self.clock.now()
        try:
            state = source.state()
            verdict = None
            if state.cc_feature:
                _, verdict = attest(source, self.parts.trust, tsm_root=Path(
                    self.cfg.tee.configfs_tsm))
        except TeeError as exc:
            self._set_verdict(now, None, f"TEE attestation could not run: {exc}")
            raise
        self.state.tee_state = state
        if verdict is None:
            message = f"confidential computing is {state.mode}"
        elif verdict.passed:
            message = "TEE attestation passed"
        else:
            message = "TEE attestation failed: " + "; ".join(
                f"{c.name}: {c.detail}" for c in verdict.failed)
        self._set_verdict(now, verdict, message)

    def preflight_tee(self) -> None:
        """The host preflight behind tee/type and its premium; the gate says its changes once."""
        self.parts.tee_gate.poll(self.clock.now(), self.store)

    def _set_verdict(self, now: datetime, verdict: Verdict | None, message: str) -> None:
        """Keep the verdict; log and record it only when what it says changes."""
        changed = message != self.state.tee_message
        self.state.tee_verdict, self.state.tee_checked = verdict, now
        self.state.tee_message = message
        if changed:
            log.log(logging.WARNING if verdict is not None and not verdict.passed
                    else logging.INFO, message)
            self.store.add_event(now, "tee", message)

    def maintenance(self) -> None:
        now = self.clock.now()
        rollups.roll_up(self.store, now)
        rollups.expire_raw(self.store, now, self.cfg.store.raw_retention_days)
        _give_back_freed_memory()


def _give_back_freed_memory() -> None:
    """Hand glibc's freed but kept pages back to the system: the agent's Python objects stay
    flat while its resident size creeps up with what the allocator keeps per thread."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing kept that way
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _interval_energy(prev: GpuSnapshot | None, snap: GpuSnapshot
                     ) -> tuple[float | None, float | None]:
    """Seconds and Wh since the previous snapshot: the energy counter where it has one."""
    if prev is None:
        return None, None
    dt_s = (snap.ts - prev.ts).total_seconds()
    if dt_s <= 0 or dt_s > 900:  # a long gap is downtime, not a role's consumption
        return None, None
    if snap.energy_total_wh is not None and prev.energy_total_wh is not None:
        delta = snap.energy_total_wh - prev.energy_total_wh
        if delta >= 0:
            return dt_s, delta
    if snap.power_w is None:
        return dt_s, None
    return dt_s, snap.power_w * dt_s / 3600.0


def _cost_rows(cfg: Config) -> list[dict]:
    rows = [{"name": i.name, "kind": "capex", "amount": i.amount, "amount_per_month": 0.0,
             "date": i.date} for i in cfg.capex.items]
    rows += [{"name": o.name, "kind": "opex", "amount": 0.0, "amount_per_month": o.amount_per_month,
              "date": o.since} for o in cfg.capex.opex]
    return rows


def _prices_changed(seen: dict, slots: list) -> bool:
    """A published price differs from what the last plan used, or an hour or more of new
    prices came (tomorrow's day-ahead); a horizon rolling on by a slot is no change."""
    known_until = max((v[2] for v in seen.values()), default=0.0)
    for s in slots:
        before = seen.get(epoch(s.start))
        if before is not None and (before[0], before[1]) != (s.import_per_kwh, s.export_per_kwh):
            return True
    return bool(slots) and epoch(max(s.end for s in slots)) - known_until >= 3600.0


def _expected(exc: Exception) -> bool:
    """Failures of the outside world get one log line; anything else gets its traceback too."""
    return isinstance(exc, SourceUnavailable | MarketError | GpuError | TeeError | KubeError)
