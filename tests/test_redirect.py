"""Where a login sends the browser next: only a path on this site, judged as a browser reads
the Location (WHATWG URL parsing drops tabs and newlines anywhere and leading or trailing
controls and spaces, and reads a backslash as a slash), also after percent-decoding and Unicode
folding; the same rule for the login form's hidden field and the guard's own redirect."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from webui.app import create_app
from webui.auth import Auth, safe_next

EVIL = "evil.example"
OFF_SITE = [
    f"//{EVIL}", f"//{EVIL}/steal", f"///{EVIL}", f"////{EVIL}", f"/\\{EVIL}", f"\\\\{EVIL}",
    f"\\/{EVIL}", f"/\\/{EVIL}", f"\\/\\{EVIL}", f"/\t/{EVIL}", f"/\n/{EVIL}", f"/\r\n/{EVIL}",
    f"\t//{EVIL}", f" //{EVIL}", f"\x00//{EVIL}", f"\x1f//{EVIL}", f"\x0b/\x0c/{EVIL}",
    f"//{EVIL}\x00", f"/\t\\{EVIL}", f"/%09/{EVIL}", f"/%0a/{EVIL}", f"/%0d%0a/{EVIL}",
    f"/%2f/{EVIL}", f"/%2F{EVIL}", f"%2F%2F{EVIL}", f"/%5c{EVIL}", f"/%5C%5C{EVIL}",
    f"/%252f/{EVIL}", f"/%25252f/{EVIL}", f"https://{EVIL}", f"http://{EVIL}",
    f"HTTPS://{EVIL}", f"https:{EVIL}", f"https:/{EVIL}", f"http:\\\\{EVIL}",
    f"ftp://{EVIL}", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)",
    " javascript:alert(1)", "data:text/html,<script>alert(1)</script>", EVIL, f"@{EVIL}",
    f"/\uff0f{EVIL}", f"\uff0f\uff0f{EVIL}", f"/\uff3c{EVIL}", f"/%EF%BC%8F{EVIL}",
    f"/\u0085/{EVIL}", f"/\x7f/{EVIL}", "/" + "a" * 5000, "", "   ",
]
ON_SITE = ["/", "/plan", "/history?from=2026-01-01&to=2026-02-01", "/settings#capex",
           "/payback", "/login?next=/plan", "/%E2%88%95x"]


class HiddenNext(HTMLParser):
    def __init__(self):
        super().__init__()
        self.value: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") == "next":
            self.value = a.get("value")


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    a = Auth(tmp_path_factory.mktemp("redirect"))
    a.set_password("correct horse battery")
    return a


def log_in(auth, next_path: str) -> str:
    c = create_app(lambda: {}, auth).test_client()
    token = c.get("/api/session").get_json()["csrf_token"]
    r = c.post("/login", data={"password": "correct horse battery", "csrf_token": token,
                               "next": next_path})
    assert r.status_code == 302
    return r.headers["Location"]


@pytest.mark.parametrize("target", OFF_SITE)
def test_the_rule_never_leaves_this_site(target):
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", ON_SITE)
def test_the_rule_keeps_a_path_on_this_site(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", OFF_SITE[:12] + OFF_SITE[19:24] + OFF_SITE[44:48])
def test_login_redirects_home_instead_of_off_site(auth, target):
    assert log_in(auth, target) == "/"


@pytest.mark.parametrize("target", ["/plan", "/history?from=2026-01-01&to=2026-02-01"])
def test_login_goes_on_to_the_page_asked_for(auth, target):
    assert log_in(auth, target) == target


@pytest.mark.parametrize("target", OFF_SITE)
def test_the_login_form_never_carries_an_off_site_next(target):
    c = create_app(lambda: {}, None).test_client()
    page = HiddenNext()
    page.feed(c.get("/login", query_string={"next": target}).get_data(as_text=True))
    assert page.value == "/"


def test_the_guard_sends_to_the_login_with_the_page_asked_for_and_nothing_else(auth):
    c = create_app(lambda: {}, auth, open_reading=False).test_client()
    r = c.get("/plan?x=1")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=%2Fplan%3Fx%3D1"
    r = c.get(f"//{EVIL}/")
    assert r.status_code in (302, 404)
    assert "evil" not in r.headers.get("Location", "")
