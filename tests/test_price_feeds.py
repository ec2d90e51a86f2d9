"""Day-ahead prices from aWATTar and ENTSO-E, against a local stand-in serving recorded-shape
answers: parsing, 15-minute slots, gaps in A03 curves, negative prices, failures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from energy.price_feeds import FeedError, FeedTariff, awattar, entsoe, parse_entsoe
from energy.types import SourceUnavailable
from tests.conftest import HANG_S
from tests.http_stub import JsonHandler, serve

DATA = Path(__file__).parent / "data" / "prices"
DAY = datetime(2026, 11, 20, 10, tzinfo=UTC)


class Feeds:
    def __init__(self):
        self.status, self.entsoe_file, self.queries = 200, "entsoe_nl_a44.xml", []
        self.awattar_body: bytes | None = None  # a hostile answer in place of the recorded one
        feeds = self

        class Handler(JsonHandler):
            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                feeds.queries.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
                if feeds.status != 200:
                    # some gateways repeat the request they refused, query and all
                    return self.send_json(feeds.status, {"error": f"unavailable: {self.path}"})
                if url.path == "/v1/marketdata":
                    body = feeds.awattar_body or (DATA / "awattar_de.json").read_bytes()
                else:
                    body = (DATA / feeds.entsoe_file).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd, self.url = serve(Handler)

    # The stand-in answers every request: the client's timeout only ends a hang.
    def awattar(self) -> Callable[[datetime, datetime], list]:
        return awattar(base_url=self.url + "/v1/marketdata", timeout_s=HANG_S)

    def entsoe(self, token: str) -> Callable[[datetime, datetime], list]:
        return entsoe(token, "10YNL----------L", base_url=self.url + "/api", timeout_s=HANG_S)


@pytest.fixture
def feeds():
    f = Feeds()
    yield f
    f.httpd.shutdown()
    f.httpd.server_close()


def test_awattar_hours_become_retail_prices_negative_ones_included(feeds):
    t = FeedTariff(feeds.awattar(), "spot * 1.21 + 0.15",
                   "spot", "aWATTar")
    slots = t.slots(DAY, DAY + timedelta(hours=4))
    assert [s.start for s in slots] == [DAY + timedelta(hours=h) for h in range(4)]
    assert slots[0].import_per_kwh == pytest.approx(0.08127 * 1.21 + 0.15, abs=1e-6)
    assert slots[2].export_per_kwh == pytest.approx(-0.00499)  # negative: kept as it is
    path, query = feeds.queries[0]
    assert int(query["start"]) == int(DAY.replace(hour=0).timestamp() * 1000)


def test_entsoe_quarter_hours_with_a03_gaps_filled_forward(feeds):
    fetch = feeds.entsoe("token-1")
    spots = fetch(DAY, DAY + timedelta(days=1))
    assert [p for _, _, p in spots] == [88.12, -3.50, -3.50, 75.00]
    assert spots[0][0] == datetime(2026, 11, 19, 23, tzinfo=UTC)
    assert spots[1][1] - spots[1][0] == timedelta(minutes=15)
    _, query = feeds.queries[0]
    assert query["documentType"] == "A44" and query["securityToken"] == "token-1"
    assert query["in_Domain"] == query["out_Domain"] == "10YNL----------L"


def test_not_yet_published_is_no_prices_and_other_refusals_are_named(feeds):
    feeds.entsoe_file = "entsoe_no_data.xml"
    assert feeds.entsoe("t")(DAY, DAY) == []
    with pytest.raises(FeedError, match="not XML"):
        parse_entsoe("<html>gateway timeout")
    with pytest.raises(FeedError, match="refused: 401"):
        parse_entsoe((DATA / "entsoe_no_data.xml").read_text().replace(">999<", ">401<"))
    feeds.status = 401
    with pytest.raises(FeedError, match="token was refused"):
        feeds.entsoe("bad")(DAY, DAY)


def test_a_failing_feed_keeps_the_prices_it_gave(feeds):
    now = [0.0]
    t = FeedTariff(feeds.awattar(), "spot", "spot", "aWATTar",
                   refresh_s=60, clock=lambda: now[0])
    before = t.slots(DAY, DAY + timedelta(hours=4))
    feeds.status = 503
    now[0] = 120.0
    assert t.slots(DAY, DAY + timedelta(hours=4)) == before
    with pytest.raises(SourceUnavailable, match="HTTP 503"):
        t.slots(DAY + timedelta(days=5), DAY + timedelta(days=6))


def test_the_config_picks_the_feed_and_reads_the_token_from_its_file(tmp_path):
    from node.config import parse_config
    from node.errors import ConfigError
    from node.wiring import tariff_for
    cfg = parse_config('[tariff]\nkind = "awattar"\nawattar_country = "at"\n', "t", tmp_path)
    assert tariff_for(cfg).name == "aWATTar"
    token = tmp_path / "entsoe.token"
    text = f'[tariff]\nkind = "entsoe"\nentsoe_token_file = "{token}"\n'
    with pytest.raises(ConfigError, match="cannot read the ENTSO-E token"):
        tariff_for(parse_config(text, "t", tmp_path))
    token.write_text("abc-123\n")
    assert tariff_for(parse_config(text, "t", tmp_path)).name == "ENTSO-E"


def test_time_of_use_prices_follow_local_time_and_weekdays(tmp_path):
    from node.config import parse_config
    from node.errors import ConfigError
    from node.wiring import tariff_for
    text = '''
[site]
timezone = "Europe/Amsterdam"
[tariff]
kind = "time_of_use"
import_per_kwh = 0.22
export_per_kwh = 0.05
[[tariff.periods]]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "07:00"
end = "23:00"
import_per_kwh = 0.31
export_per_kwh = 0.07
'''
    t = tariff_for(parse_config(text, "t", tmp_path))
    monday = datetime(2026, 11, 23, 5, 30, tzinfo=UTC)  # 06:30 in Amsterdam
    slots = t.slots(monday, monday + timedelta(hours=1))
    assert [(s.start.minute, s.import_per_kwh) for s in slots] == [
        (30, 0.22), (45, 0.22), (0, 0.31), (15, 0.31)]
    saturday = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert t.slots(saturday, saturday + timedelta(minutes=15))[0].import_per_kwh == 0.22
    with pytest.raises(ConfigError, match="later than start"):
        parse_config(text.replace('end = "23:00"', 'end = "06:00"'), "t", tmp_path)


@pytest.mark.parametrize("status", [400, 403, 404, 429, 500, 503])
def test_a_failing_entsoe_answer_never_carries_the_token_into_the_error(feeds, status):
    token = "entsoe-test-T0ken-77c1"
    feeds.status = status
    with pytest.raises(FeedError) as failed:
        feeds.entsoe(token)(DAY, DAY)
    assert token not in str(failed.value)


def test_a_refused_connection_is_told_without_the_url_and_its_token():
    import socket
    token = "entsoe-test-T0ken-88d2"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    with pytest.raises(FeedError, match="connection failed") as failed:
        entsoe(token, "10YNL----------L", base_url=url)(DAY, DAY)
    assert token not in str(failed.value) and "securityToken" not in str(failed.value)


@pytest.mark.parametrize("body, why", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"data": [{"start_timestamp": 0, "end_timestamp": 1, "marketprice": NaN}]}', "not JSON"),
    (b'{"data": ' + b"1" * 5000 + b"}", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (b'{"data": [' + b'{"a": 1},' * 300_000 + b'{"a": 1}]}', "larger than"),
    (b"[]", "not an object"),
])
def test_a_hostile_awattar_answer_is_a_feed_error_and_the_prices_given_stay(feeds, body, why):
    now = [0.0]
    t = FeedTariff(feeds.awattar(), "spot", "spot", "aWATTar", refresh_s=60,
                   clock=lambda: now[0])
    before = t.slots(DAY, DAY + timedelta(hours=4))
    feeds.awattar_body = body
    with pytest.raises(FeedError, match=why):
        feeds.awattar()(DAY, DAY + timedelta(days=1))
    now[0] = 120.0
    assert t.slots(DAY, DAY + timedelta(hours=4)) == before
