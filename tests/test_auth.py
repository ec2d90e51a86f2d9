"""The dashboard's guard: open reading on localhost, login and CSRF for every change, a throttle
on failed logins that slows a guesser and never locks the owner out, the password hashed in a
file only sunrig reads, and /metrics."""

from __future__ import annotations

import stat

import pytest
from argon2 import PasswordHasher

from webui.app import create_app
from webui.auth import (
    FREE_FAILURES,
    GLOBAL_FREE_FAILURES,
    GLOBAL_SPACING_S,
    MAX_DELAY_S,
    Auth,
    AuthError,
    Throttled,
)

RIGHT = "correct horse battery"

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


class FakeTime:
    """A clock the throttle reads and a sleep that moves it: no test ever waits."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def timed(tmp_path):
    t = FakeTime()
    auth = Auth(tmp_path, clock=t.clock, sleep=t.sleep)
    # what is under test is the throttle, not argon2's cost: a light hash keeps dozens of
    # guesses quick on a busy machine
    auth.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    auth.set_password(RIGHT)
    return auth, t


def guess(auth, client="127.0.0.1", password="wrong guess") -> str:
    try:
        auth.check(password, client)
    except Throttled:
        return "throttled"
    except AuthError:
        return "wrong"
    return "in"


def test_a_guesser_on_the_owners_address_never_locks_the_owner_out(timed):
    auth, t = timed
    for _ in range(50):  # a local process guessing as fast as it is let
        assert guess(auth) == "wrong"
    t.slept.clear()
    assert guess(auth, password=RIGHT) == "in"  # same address, right password: let in
    assert sum(t.slept) <= MAX_DELAY_S  # after a short, bounded wait


def test_each_failure_beyond_the_free_ones_doubles_the_wait_up_to_a_bound(timed):
    auth, t = timed
    for _ in range(FREE_FAILURES + 6):
        assert guess(auth) == "wrong"
    waits = t.slept
    assert waits[:1] == [1.0] and waits[1:4] == [2.0, 4.0, 8.0]
    assert all(0 < w <= MAX_DELAY_S for w in waits) and waits[-1] == MAX_DELAY_S
    assert len(waits) == 6  # the first failures are typos: no wait at all


def test_a_success_clears_the_sources_delay_and_a_quiet_source_is_forgotten(timed):
    auth, t = timed
    for _ in range(FREE_FAILURES + 3):
        guess(auth)
    assert guess(auth, password=RIGHT) == "in"
    t.slept.clear()
    assert guess(auth) == "wrong" and t.slept == []
    for _ in range(FREE_FAILURES + 3):
        guess(auth)
    t.now += 3600  # an hour of quiet
    t.slept.clear()
    assert guess(auth) == "wrong" and t.slept == []


def test_an_attempt_that_would_wait_too_long_is_refused_unchecked(timed):
    auth, t = timed
    for _ in range(FREE_FAILURES + 5):
        guess(auth)
    # parallel attempts of one source queue for turns; beyond the bound they are refused
    # before the password is even looked at, and told when to come back
    auth._reserve("127.0.0.1")  # one attempt holds the next turn
    with pytest.raises(Throttled) as refused:
        auth.check(RIGHT, "127.0.0.1")
    assert 1 <= refused.value.retry_after_s <= MAX_DELAY_S
    t.now += refused.value.retry_after_s + MAX_DELAY_S
    assert guess(auth, password=RIGHT) == "in"


def test_another_address_is_not_slowed_by_one_guesser_until_guessing_is_widespread(timed):
    auth, t = timed
    for _ in range(FREE_FAILURES + 4):
        guess(auth, "10.0.0.9")
    t.slept.clear()
    assert guess(auth, "10.0.0.7", RIGHT) == "in" and t.slept == []
    for n in range(GLOBAL_FREE_FAILURES):  # many addresses, a guess or two each
        guess(auth, f"10.1.{n // 200}.{n % 200}")
    t.slept.clear()
    assert guess(auth, "10.2.0.1") == "wrong" and guess(auth, "10.2.0.2") == "wrong"
    assert t.slept and max(t.slept) <= GLOBAL_SPACING_S


def test_the_login_form_answers_429_with_retry_after_only_when_refused_unchecked(timed):
    auth, t = timed
    c = client(auth)
    for _ in range(FREE_FAILURES + 5):
        r = c.post("/login", json={"password": "guess"}, headers={"X-CSRF-Token": csrf(c)})
        assert r.status_code == 401 and r.get_json()["error"] == "wrong password"
    auth._reserve("127.0.0.1")
    r = c.post("/login", json={"password": RIGHT}, headers={"X-CSRF-Token": csrf(c)})
    assert r.status_code == 429 and "try again in" in r.get_json()["error"]
    assert 1 <= int(r.headers["Retry-After"]) <= MAX_DELAY_S
    t.now += 2 * MAX_DELAY_S
    r = c.post("/login", json={"password": RIGHT}, headers={"X-CSRF-Token": csrf(c)})
    assert r.status_code == 200 and c.get("/api/session").get_json()["logged_in"]


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


def test_a_new_password_typed_twice_differently_is_refused_and_nothing_is_kept(auth, tmp_path):
    with pytest.raises(AuthError, match="the two passwords differ"):
        auth.set_password(RIGHT, RIGHT + "!")
    assert not auth.has_password and not (tmp_path / "dashboard.passwd").exists()
    auth.set_password(RIGHT, RIGHT)
    auth.check(RIGHT, "127.0.0.1")


def test_the_setup_page_asks_for_the_password_twice_and_pages_offer_login_and_logout(auth):
    c = client(auth)
    page = c.get("/login?next=/settings").get_data(as_text=True)
    assert 'id="confirm"' in page and 'autocomplete="new-password"' in page
    assert 'name="next" value="/settings"' in page
    c.post("/setup", json={"password": RIGHT}, headers={"X-CSRF-Token": csrf(c)})
    assert 'id="confirm"' not in c.get("/login").get_data(as_text=True)  # a login: once
    logged_in = c.get("/").get_data(as_text=True)
    assert 'id="logout"' in logged_in and f'value="{csrf(c)}"' in logged_in
    anonymous = client(auth).get("/plan").get_data(as_text=True)
    assert 'id="logout"' not in anonymous and 'href="/login?next=/plan"' in anonymous
