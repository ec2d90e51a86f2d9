"""Series files the config names (energy.simulated.data_file, tariff.prices_file) that are broken
or hostile: each is a SeriesError naming the file (and the line and column of a bad cell), never
a traceback, and a bad cell is never let through as a value."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import pytest

import energy.files
import energy.series
from energy.series import MAX_ABS_VALUE, SeriesError, load_series
from energy.tariff import DayAheadTariff
from tests.test_config_hostile import release_a_reader

HEADER = "ts_utc,eur_per_mwh\n"
GOOD_ROWS = "2024-01-01T00:00:00Z,50.0\n2024-01-01T01:00:00Z,60.5\n"
GOOD = (HEADER + GOOD_ROWS).encode()


def load(path: Path) -> energy.series.Series:
    return load_series(str(path), "ts_utc", ["eur_per_mwh"])


def series_error(path: Path) -> str:
    with pytest.raises(SeriesError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(str(path)) and len(message) < 400, message
    return message


HOSTILE_FILES = {
    "not_utf8.csv": HEADER.encode() + b"2024-01-01T00:00:00Z,50\n2024-01-01T01:00:00Z,\xff\xfe\n",
    "latin1.csv": "ts_utc,eur_per_mwh,note\n2024-01-01T00:00:00Z,5,café\n".encode("latin-1"),
    "utf16.csv": (HEADER + GOOD_ROWS).encode("utf-16"),
    "binary.csv": bytes(range(256)) * 16,
    "nul.csv": HEADER.encode() + b"2024-01-01T00:00:00Z,5\x00\n2024-01-01T01:00:00Z,6\n",
    "long_field.csv": HEADER.encode() + b"2024-01-01T00:00:00Z,\"" + b"9" * 200_000 + b"\"\n",
    "broken_quote.csv": HEADER.encode() + b'2024-01-01T00:00:00Z,"5"x"\n' * 2,
    "empty.csv": b"",
    "header_only.csv": HEADER.encode(),
    "not_gzip.csv.gz": GOOD,
    "truncated.csv.gz": gzip.compress(GOOD * 50)[:40],
    "trailing_junk.csv.gz": gzip.compress(GOOD) + b"junk after the member",
    "gzip_of_binary.csv.gz": gzip.compress(bytes(range(256)) * 16),
    "gzip_of_latin1.csv.gz": gzip.compress("ts_utc,eur_per_mwh\n\xe9\n".encode("latin-1")),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_a_hostile_series_file_is_a_series_error_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(HOSTILE_FILES[name])
    series_error(path)


def test_text_that_is_not_utf8_says_so_and_where(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HOSTILE_FILES["latin1.csv"])
    where = HOSTILE_FILES["latin1.csv"].index(b"\xe9")
    assert f"is not UTF-8 text (byte {where} is not)" in series_error(path)


def test_a_folder_a_fifo_and_nothing_are_named_for_what_they_are(tmp_path):
    fifo = tmp_path / "prices.csv"
    os.mkfifo(fifo)
    done = threading.Event()
    writer = release_a_reader(fifo, done)
    try:
        assert "is a folder" in series_error(tmp_path)
        assert "not a regular file" in series_error(fifo)
        assert "no such file" in series_error(tmp_path / "missing.csv")
        file_as_folder = tmp_path / "plain.csv"
        file_as_folder.write_bytes(GOOD)
        assert "cannot read" in series_error(file_as_folder / "prices.csv")
    finally:
        done.set()
        writer.join()


def test_a_file_sunrig_may_not_read_is_named(tmp_path, monkeypatch):
    path = tmp_path / "prices.csv"
    path.write_bytes(GOOD)

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    # the tests run as root, whom file modes do not stop: the refusal is the kernel's answer
    monkeypatch.setattr(energy.files.os, "open", refused)
    assert "Permission denied" in series_error(path)


def test_a_small_gzip_that_unpacks_to_too_much_is_refused_before_it_is_unpacked(tmp_path,
                                                                                monkeypatch):
    monkeypatch.setattr(energy.series, "MAX_SERIES_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(HEADER.encode() + b"0" * (8 << 20)))
    assert bomb.stat().st_size < 64 << 10
    assert "unpacks to more than 1 MiB" in series_error(bomb)
    huge = tmp_path / "huge.csv"
    huge.write_bytes(GOOD + b"#" * (1 << 20))
    assert "larger than 1 MiB" in series_error(huge)


def test_gzip_files_of_several_members_and_a_byte_order_mark_still_load(tmp_path):
    path = tmp_path / "two_members.csv.gz"
    path.write_bytes(gzip.compress(("\ufeff" + HEADER).encode()) + gzip.compress(
        GOOD_ROWS.encode()))
    series = load(path)
    assert series.columns["eur_per_mwh"] == (50.0, 60.5)


@pytest.mark.parametrize("name", ["nope.csv.gz", "../series.py", "../../node/default.toml",
                                  "/etc/passwd", "data/household_2024_30min.csv.gz", "",
                                  "README.md"])
def test_an_embedded_name_that_is_not_shipped_names_what_is(name):
    with pytest.raises(SeriesError) as err:
        load_series(f"embedded:{name}", "ts_utc", ["eur_per_mwh"])
    assert f"embedded:{name}" in str(err.value)
    assert "nl_day_ahead_2024_2025.csv.gz" in str(err.value)


BAD_CELLS = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", "1e308", "-1e308",
             "1e999", f"{MAX_ABS_VALUE * 10:g}", "abc", "0x10", "1,5", "5 EUR", "--1", "1e",
             "9" * 400]


@pytest.mark.parametrize("cell", BAD_CELLS, ids=[c[:20] for c in BAD_CELLS])
def test_a_cell_that_is_no_finite_plausible_number_is_refused_by_line_and_column(tmp_path,
                                                                                  cell):
    path = tmp_path / "prices.csv"
    path.write_text(HEADER + GOOD_ROWS + f'2024-01-01T02:00:00Z,"{cell}"\n')
    message = series_error(path)
    assert f"{path}, line 4, column eur_per_mwh:" in message


BAD_STAMPS = ["2024-01-01T00:00:00", "yesterday", "", "2024-13-01T00:00:00Z",
              "9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00", "x" * 100_000,
              "2024-01-01T00:00:00+99:00"]


@pytest.mark.parametrize("stamp", BAD_STAMPS, ids=[s[:20] for s in BAD_STAMPS])
def test_a_timestamp_that_is_not_an_aware_iso_time_is_refused_by_line(tmp_path, stamp):
    path = tmp_path / "prices.csv"
    path.write_text(HEADER + GOOD_ROWS + f"{stamp},5\n")
    assert f"{path}, line 4: timestamp" in series_error(path)


def test_an_empty_or_missing_cell_stays_a_gap(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(HEADER + GOOD_ROWS + "2024-01-01T02:00:00Z,\n2024-01-01T03:00:00Z\n"
                    "2024-01-01T04:00:00Z,-499.5\n")
    assert load(path).columns["eur_per_mwh"] == (50.0, 60.5, None, None, -499.5)


def test_the_tariff_and_the_recorded_site_refuse_a_bad_file_naming_it(tmp_path):
    from energy.sim import SimulatedSite

    path = tmp_path / "prices.csv.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(SeriesError, match="prices.csv.gz: is not a valid gzip file"):
        DayAheadTariff(str(path), "spot", "spot")
    site = tmp_path / "household.csv"
    site.write_text("ts_utc,load_w,pv_w\n2024-01-01T00:00:00Z,300,0\n"
                    "2024-01-01T00:30:00Z,inf,0\n")
    with pytest.raises(SeriesError, match="household.csv, line 3, column load_w"):
        SimulatedSite(str(site))
