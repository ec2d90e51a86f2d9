"""The clear sky drawn by a child process: the agent's process never loads pvlib, pandas or
scipy, and the curves are pvlib's own, the same as drawn in place."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from energy.pv_forecast import Array

ARRAY = Array(52.37, 4.90, 10.0, 35.0, 180.0)
PROBE = """
import json, sys
from datetime import UTC, datetime, timedelta
from energy.pv_forecast import Array, clear_sky_w
times = [datetime(2024, 6, 20, tzinfo=UTC) + timedelta(minutes=37 * k) for k in range(80)]
watts = clear_sky_w(Array(52.37, 4.90, 10.0, 35.0, 180.0), times)
print(json.dumps({"watts": watts, "loaded": sorted({"pvlib", "pandas", "scipy"}
                                                   & set(sys.modules))}))
"""


def test_a_process_without_pvlib_gets_pvlibs_curve_from_a_child_and_loads_none_of_it():
    from energy.pv_forecast import clear_sky_w

    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=True, timeout=300)
    apart = json.loads(done.stdout)
    assert apart["loaded"] == []
    times = [datetime(2024, 6, 20, tzinfo=UTC) + timedelta(minutes=37 * k) for k in range(80)]
    import pvlib  # noqa: F401 - loaded here: this process draws the same curve in place
    assert apart["watts"] == clear_sky_w(ARRAY, times)
    assert max(apart["watts"]) > 5000  # a June noon on 10 kWp


def test_the_child_draws_each_day_asked_and_refuses_a_bad_request_by_name():
    from energy.pv_forecast import _curves_apart

    curves = _curves_apart(ARRAY, [date(2024, 6, 20), date(2024, 12, 21)])
    assert len(curves) == 2 and max(curves[0]) > 1.5 * max(curves[1])  # June over December
    with pytest.raises(RuntimeError, match="clear-sky curves could not be drawn"):
        _curves_apart(Array(152.0, 4.9, 10.0), [date(2024, 6, 20)])
