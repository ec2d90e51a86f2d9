"""The dashboard's guard: open reading on localhost, login and CSRF for every change, a limit on
failed logins, the password hashed in a file only sunrig reads, and /metrics."""

from __future__ import annotations

import stat

import pytest

from webui.app import create_app
from webui.auth import MAX_FAILURES, Auth

STATUS = {"site_name": "Test rig", "currency": "EUR", "rig_power_w": 3400.0,
          "roles": {"local": 1, "market": 6, "parked": 1},
          "site": {"pv_w": 5000.0, "load_w": 700.0, "grid_w": -900.0, "battery_w": 400.0,
                   "soc_pct": 61.0, "stale": False},
          "today": {"revenue": 12.5, "energy_cost": 1.25}, "payback": {"net_to_date": 10.0,
                                                                      "paid_back_pct": 2.5},
          "price": {"import_per_kwh": 0.3, "export_per_kwh": 0.05},
          "plan": {"offered": {"akash": 6}, "floor_per_gpu_hour": {"akash": 2.1}},
          "jobs": {"plan": {"ok": True}, "sample_site": {"ok": False}},
          "tee": {"advertised": False}}


@pytest.fixture
def auth(tmp_path):
    return Auth(tmp_path, clock=lambda: 1000.0)


def client(auth, open_reading=True):
    return create_app(lambda: dict(STATUS), auth, open_reading).test_client()


def csrf(c) -> str:
    return c.get("/api/session").get_json()["csrf_token"]


def test_reading_is_open_on_localhost_and_changes_need_the_login(auth):
    c = client(auth)
    assert c.get("/metrics").status_code == 200
    r = c.post("/logout")
    assert r.status_code == 401 and "log in first" in r.get_json()["error"]


def test_the_first_change_sets_a_hashed_password_then_login_and_csrf_guard_changes(auth, tmp_path):
    c = client(auth)
    assert c.get("/login").status_code == 200 and b"Set password" in c.get("/login").data
    bad = c.post("/setup", json={"password": "short"}, headers={"X-CSRF-Token": csrf(c)})
    assert bad.status_code == 400 and "at least 10" in bad.get_json()["error"]
    assert c.post("/setup", json={"password": "correct horse battery"}).status_code == 403
    ok = c.post("/setup", json={"password": "correct horse battery"},
                headers={"X-CSRF-Token": csrf(c)})
    assert ok.status_code == 200 and ok.get_json()["ok"]
    hashed = (tmp_path / "dashboard.passwd").read_text()
    assert hashed.startswith("$argon2") and "correct horse" not in hashed
    assert stat.S_IMODE((tmp_path / "dashboard.passwd").stat().st_mode) == 0o600
    again = c.post("/setup", json={"password": "another password!"},
                   headers={"X-CSRF-Token": csrf(c)})
    assert again.status_code == 400  # a set password is changed by the owner, not by anyone
    assert c.post("/logout").status_code == 403  # logged in, but no CSRF token
    out = c.post("/logout", headers={"X-CSRF-Token": csrf(c)})
    assert out.status_code == 302 and not c.get("/api/session").get_json()["logged_in"]
    fresh = client(auth)
    r = fresh.post("/login", json={"password": "correct horse battery"},
                   headers={"X-CSRF-Token": csrf(fresh)})
    assert r.status_code == 200 and fresh.get("/api/session").get_json()["logged_in"]


def test_too_many_failed_logins_are_refused_even_with_the_right_password(auth):
    auth.set_password("correct horse battery")
    c = client(auth)
    for _ in range(MAX_FAILURES):
        r = c.post("/login", json={"password": "guess"}, headers={"X-CSRF-Token": csrf(c)})
        assert r.status_code in (401, 429)
    r = c.post("/login", json={"password": "correct horse battery"},
               headers={"X-CSRF-Token": csrf(c)})
    assert r.status_code == 429 and "too many failed logins" in r.get_json()["error"]


def test_beyond_localhost_reading_needs_the_login_too(auth):
    auth.set_password("correct horse battery")
    c = client(auth, open_reading=False)
    assert c.get("/metrics").status_code == 401
    assert c.get("/").status_code == 302 and "/login" in c.get("/").headers["Location"]
    c.post("/login", json={"password": "correct horse battery"},
           headers={"X-CSRF-Token": csrf(c)})
    assert c.get("/metrics").status_code == 200


def test_login_never_redirects_to_another_site(auth):
    auth.set_password("correct horse battery")
    c = client(auth)
    token = csrf(c)
    r = c.post("/login", data={"password": "correct horse battery", "csrf_token": token,
                               "next": "//evil.example/steal"})
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_metrics_show_the_rig_and_no_secret(auth, tmp_path):
    auth.set_password("correct horse battery")
    text = client(auth).get("/metrics").get_data(as_text=True)
    assert 'sunrig_gpus{role="market"} 6.0' in text
    assert 'sunrig_site_power_watts{flow="grid"} -900.0' in text
    assert 'sunrig_floor_per_gpu_hour{currency="EUR",market="akash"} 2.1' in text
    assert 'sunrig_job_ok{job="sample_site"} 0.0' in text
    assert 'sunrig_source_stale{source="site"} 0.0' in text
    assert "argon2" not in text and (tmp_path / "dashboard.key").read_bytes().hex() not in text
