"""SunSpec over a real pymodbus TCP server on 127.0.0.1: discovery, scale factors, missing
values, and a device that stops, hangs or talks nonsense."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from energy import modbus, sunspec
from energy.modbus import BACKOFF_FIRST_S, ModbusHub, ModbusLink, SunSpecSite
from energy.sim import BatterySpec, SimulatedSite
from energy.sunspec_sim import SunSpecSimServer
from energy.types import SourceUnavailable
from tests.conftest import HANG_S, wait_until

NOON = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)


def sim_site():
    return SimulatedSite(pv_scale=6.0, battery=BatterySpec(20, 8000, 8000),
                         rig_power_w=lambda: 4000.0)


@pytest.fixture
def server():
    srv = SunSpecSimServer(sim_site(), lambda: NOON, refresh_s=0.2).start()
    yield srv
    srv.stop()


def reader(srv, hub=None, **kw) -> SunSpecSite:
    # a live local server answers; its timeout only ends a hang, never a busy machine's pause
    hub = hub or ModbusHub(timeout_s=HANG_S)
    return SunSpecSite(hub.link("127.0.0.1", srv.port), **kw)


def count_connection_attempts(link: ModbusLink) -> list[int]:
    """A one-item list counting the link's TCP connection attempts from now on (pymodbus'
    connect() is also called on a connection already open: that is no attempt)."""
    attempts = [0]
    connect = link.client.connect

    def counted() -> bool:
        attempts[0] += not link.client.connected
        return connect()
    link.client.connect = counted
    return attempts


@pytest.fixture
def modbus_clock(monkeypatch) -> list[float]:
    """energy.modbus' monotonic clock, moved only by the test: its back-off is then exact."""
    now = [1000.0]
    monkeypatch.setattr(modbus, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_the_models_are_found_and_read_like_the_site(server):
    site = reader(server, rig_power_w=lambda: 4000.0)
    assert [m.model_id for m in site.models(1)] == [1, 103, 160, 802, 203]
    s = site.read(NOON)
    truth = server.last
    assert s.pv_w == pytest.approx(truth.pv_w, abs=2)  # MPPT strings, whole watts
    assert s.grid_w == pytest.approx(truth.grid_w, abs=10)  # tens of watts
    assert s.soc_pct == pytest.approx(truth.soc_pct, abs=0.1)
    assert s.battery_w == pytest.approx(truth.battery_w, abs=1)
    assert s.load_w == pytest.approx(truth.load_w, abs=15)  # the house: meter less the rig
    assert not s.stale
    common = sunspec.decode(1, sunspec.read_model(lambda a, n: site.link.read(1, a, n),
                                                  site.models(1)[0]))
    assert common["Mn"] == "sunrig" and common["SN"] == "SIM-0001"


@pytest.mark.parametrize("base", [0, 50000])
def test_the_map_is_found_at_every_base(base):
    srv = SunSpecSimServer(sim_site(), lambda: NOON, base=base).start()
    try:
        models = reader(srv).models(1)
        assert models[0].address == base + 2 and len(models) == 5
    finally:
        srv.stop()


def test_not_implemented_and_absurd_values_are_missing_not_zero(server):
    meter = server.addr[203]
    server.corrupt = {meter + 18: 0x8000}  # meter W not implemented
    server.refresh()
    s = reader(server).read(NOON)
    assert s.grid_w is None and s.load_w is None and s.stale
    server.corrupt = {meter + 22: 0x7FFF}  # a scale factor of 10^32767: garbage
    server.refresh()
    assert reader(server).read(NOON).grid_w is None
    bat = server.addr[802]
    server.corrupt = {bat + 11: 0xFFFF}  # SoC not implemented
    server.refresh()
    assert reader(server).read(NOON).soc_pct is None
    assert sunspec.value([0, 0], sunspec.Point(0, "acc32", size=2)) is None
    assert sunspec.value([0x7FC0, 0], sunspec.Point(0, "float32", size=2)) is None  # NaN


def test_a_stopped_server_is_unavailable_waits_out_its_back_off_and_recovers(modbus_clock,
                                                                             caplog):
    srv = SunSpecSimServer(sim_site(), lambda: NOON).start()
    site = reader(srv)
    site.read(NOON)
    attempts = count_connection_attempts(site.link)
    srv.stop()
    caplog.set_level(logging.INFO, "sunrig.modbus")
    for _ in range(5):  # the first finds the connection closed, the rest wait out its back-off
        with pytest.raises(SourceUnavailable):
            site.read(NOON)
    assert attempts[0] == 0
    backoff_s = BACKOFF_FIRST_S
    for tries in range(1, 4):  # once each back-off has passed: one attempt, then a longer wait
        modbus_clock[0] += backoff_s
        for _ in range(3):
            with pytest.raises(SourceUnavailable):
                site.read(NOON)
        assert attempts[0] == tries
        backoff_s *= 2
    again = SunSpecSimServer(sim_site(), lambda: NOON, port=srv.port).start()
    try:
        modbus_clock[0] += backoff_s
        assert site.read(NOON).pv_w is not None
        assert attempts[0] == 4  # back at the first attempt the back-off allowed
    finally:
        again.stop()
    failing = [r for r in caplog.records if "failing" in r.message]
    recovered = [r for r in caplog.records if "recovered" in r.message]
    assert len(failing) == 1 and len(recovered) == 1


def test_a_device_that_never_answers_times_out_on_its_one_connection():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    conns = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(listener.accept()[0])  # and say nothing
    threading.Thread(target=accept, daemon=True).start()
    try:  # a test of the timeout itself: a short one, against a peer that never answers
        link = ModbusHub(timeout_s=0.5).link("127.0.0.1", listener.getsockname()[1])
        attempts = count_connection_attempts(link)
        with pytest.raises(SourceUnavailable, match="failed"):  # the client's own timeout
            SunSpecSite(link).read(NOON)
        assert attempts[0] == 1 and not link.client.connected  # no retry; closed for a fresh one
        wait_until(lambda: len(conns) == 1, "the listener seeing the one connection")
    finally:
        stop.set()
        listener.close()
        for conn in conns:
            conn.close()


def test_a_map_without_the_marker_is_named(server):
    server.corrupt = {server.base: 0x1234}
    server.refresh()
    with pytest.raises(SourceUnavailable, match="no SunSpec marker"):
        reader(server).read(NOON)


def test_devices_behind_one_host_share_one_link(server):
    hub = ModbusHub()
    a, b = reader(server, hub), reader(server, hub)
    assert a.link is b.link and len(hub.links) == 1


def test_probe_prints_the_models_and_a_sample(server, capsys):
    import json

    from node.cli.commands import main
    assert main(["probe", "modbus", f"127.0.0.1:{server.port}", "--timeout", str(HANG_S)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["id"] for m in doc["models"]] == [1, 103, 160, 802, 203]
    assert doc["points"]["1"]["Mn"] == "sunrig"
    assert doc["sample"]["pv_w"] == pytest.approx(server.last.pv_w, abs=2)
    assert main(["probe", "modbus", "127.0.0.1:1", "--timeout", str(HANG_S)]) == 1  # refused
    assert "cannot connect" in capsys.readouterr().err
    assert main(["probe", "modbus", "nonsense"]) == 2


def test_the_agent_marks_the_site_stale_stores_nothing_wrong_and_recovers(tmp_path):
    from tests.conftest import START, make_agent, run_for

    agent, clock = make_agent(tmp_path)
    srv = SunSpecSimServer(sim_site(), clock.now).start()
    agent.parts.site = SunSpecSite(ModbusHub(timeout_s=HANG_S).link("127.0.0.1", srv.port))
    run_for(agent, clock, hours=0.2)
    assert agent.state.site is not None and not agent.state.site.stale
    stored = agent.store.query("SELECT count(*) AS n FROM site_samples")[0]["n"]
    srv.stop()
    run_for(agent, clock, hours=0.2)
    assert agent.state.site.stale and not agent.state.jobs["sample_site"].ok
    assert agent.watchdog_ok()  # the outside world failing: no restart
    assert agent.state.jobs["sample_gpus"].ok and agent.state.jobs["apply_roles"].ok
    assert agent.store.query("SELECT count(*) AS n FROM site_samples")[0]["n"] == stored
    again = SunSpecSimServer(sim_site(), clock.now, port=srv.port).start()
    try:
        def sampled_again() -> bool:  # once the link's back-off (real time) has passed
            run_for(agent, clock, hours=0.05, jobs=("sample_site",))
            return agent.state.jobs["sample_site"].ok
        wait_until(sampled_again, "the site sampled again")
        run_for(agent, clock, hours=0.05)
        assert not agent.state.site.stale
        rows = agent.store.query("SELECT pv_w, grid_w FROM site_samples ORDER BY ts")
        assert len(rows) > stored and all(r["grid_w"] is not None for r in rows)
        assert agent.state.jobs["plan"].ok and agent.state.jobs["sync_markets"].ok
    finally:
        again.stop()
        agent.store.close()
    assert clock.now() > START
