"""EMHASS side by side with the planner: the same horizon solved by EMHASS's own optimisation.

Run with the Python of the virtual environment `make bench-emhass` makes (EMHASS is not a
dependency of sunrig, and this file imports nothing of sunrig). It reads on stdin the moments
bench/planner.py sends (per 15-minute slot: import and export prices, PV and house load; the
rig's GPUs, their busy draw and the battery) and prints JSON: per moment, the seconds of a fresh
solve (EMHASS's `Optimization` built and `perform_dayahead_forecast_optim` run, as a process
that plans once does) and of a warm one (the same instance run again on the next moment's data:
EMHASS keeps its CVXPY problem and updates its parameters).

EMHASS's API as read in its source (emhass 0.18, PyPI): emhass/optimization.py
(`Optimization.__init__(retrieve_hass_conf, optim_conf, plant_conf, var_load_cost,
var_prod_price, costfun, emhass_conf, logger, opt_time_delta, num_timesteps)`,
`perform_dayahead_forecast_optim(df_input_data, p_pv, p_load, soc_init, soc_final)`) and
emhass/utils.py (`build_config`, `build_params`, `get_yaml_parse`, from
emhass/data/config_defaults.json).

The rig enters EMHASS the way EMHASS models flexible consumers: each GPU is a deferrable load of
its busy draw (cooling included), to run as many hours of the horizon as the owner's rig is
leased over its year (about three quarters), continuous within a slot (as the planner's expected
leases are; semi-continuous loads add a binary per GPU and slot and take EMHASS several times
longer); the battery, PV, house load and prices are the planner's. The problems differ in what
they decide (EMHASS schedules loads, the planner prices GPUs for a market), but both are programs
over the same 192 slots with the same site, solved by HiGHS. Times are wall and CPU seconds: on a
busy machine the wall clock mostly measures the neighbours.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import pathlib
import sys
import tempfile
import time

import emhass
import pandas as pd
from emhass import utils
from emhass.optimization import Optimization

LEASED_SHARE = 0.75  # of the horizon each GPU runs: the owner's rig's utilisation over a year
LOAD_COST, PROD_PRICE = "unit_load_cost", "unit_prod_price"


def emhass_conf(data_dir: pathlib.Path) -> dict:
    root = pathlib.Path(emhass.__file__).parent
    return {"root_path": root, "data_path": data_dir, "config_path": data_dir / "config.json",
            "defaults_path": root / "data" / "config_defaults.json",
            "associations_path": root / "data" / "associations.csv"}


def configs(doc: dict, conf: dict, logger: logging.Logger) -> tuple[dict, dict, dict]:
    """EMHASS's three configuration dicts for this moment's rig and site."""
    config = asyncio.run(utils.build_config(conf, logger, str(conf["defaults_path"])))
    gpus, slots = doc["gpus"], len(doc["import"])
    capacity_wh, soc_wh, min_wh, charge_w, discharge_w = doc["battery_wh"]
    config.update({
        "optimization_time_step": 15, "delta_forecast_daily": doc["horizon_hours"] / 24,
        "costfun": "profit", "set_use_pv": True, "set_use_battery": capacity_wh > 0,
        "number_of_deferrable_loads": gpus,
        "nominal_power_of_deferrable_loads": [doc["busy_w"] * doc["cooling"]] * gpus,
        "minimum_power_of_deferrable_loads": [0.0] * gpus,
        "operating_hours_of_each_deferrable_load": [
            round(LEASED_SHARE * slots / 4)] * gpus,
        "start_timesteps_of_each_deferrable_load": [0] * gpus,
        "end_timesteps_of_each_deferrable_load": [0] * gpus,
        "treat_deferrable_load_as_semi_cont": [False] * gpus,
        "set_deferrable_load_single_constant": [False] * gpus,
        "set_deferrable_startup_penalty": [0.0] * gpus,
        "deferrable_load_max_cost": [0.0] * gpus,
        "set_deferrable_max_startups": [0] * gpus,
        "cost_forecast_per_deferrable_load": [None] * gpus,
        "maximum_power_from_grid": doc["breaker_w"], "maximum_power_to_grid": doc["breaker_w"],
        "battery_nominal_energy_capacity": capacity_wh,
        "battery_charge_power_max": charge_w, "battery_discharge_power_max": discharge_w,
        "battery_minimum_state_of_charge": min_wh / capacity_wh if capacity_wh else 0.0,
        "battery_maximum_state_of_charge": 1.0,
        "battery_target_state_of_charge": soc_wh / capacity_wh if capacity_wh else 0.0,
        "num_threads": 1, "lp_solver": "Highs", "lp_solver_mip_rel_gap": 1e-3})
    params = asyncio.run(utils.build_params(conf, {}, config, logger))
    return utils.get_yaml_parse(params, logger)


def frames(doc: dict, tz: str) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """The moment's prices (per kWh), PV and house load (W) on EMHASS's time index."""
    first = pd.Timestamp(doc["now"]).floor("15min").tz_convert(tz)
    index = pd.date_range(first, periods=len(doc["import"]), freq="15min")
    df = pd.DataFrame({LOAD_COST: doc["import"], PROD_PRICE: doc["export"]}, index=index)
    return df, pd.Series(doc["pv_w"], index=index), pd.Series(doc["house_w"], index=index)


def solve(opt: Optimization, doc: dict, tz: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of one day-ahead optimisation, and EMHASS's status."""
    df, pv, load = frames(doc, tz)
    capacity_wh, soc_wh = doc["battery_wh"][:2]
    soc = soc_wh / capacity_wh if capacity_wh else None
    t0, c0 = time.perf_counter(), time.process_time()
    opt.perform_dayahead_forecast_optim(df, pv, load, soc_init=soc, soc_final=soc)
    return time.perf_counter() - t0, time.process_time() - c0, str(opt.optim_status)


def main() -> None:
    docs = json.load(sys.stdin)
    logger = logging.getLogger("emhass-side")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        conf = emhass_conf(pathlib.Path(tmp))
        for doc, after in zip(docs, docs[1:] + docs[:1], strict=True):
            retrieve, optim, plant = configs(doc, conf, logger)
            tz = retrieve["time_zone"]
            t0, c0 = time.perf_counter(), time.process_time()
            opt = Optimization(retrieve, optim, plant, LOAD_COST, PROD_PRICE, "profit", conf,
                               logger, num_timesteps=len(doc["import"]))
            built_s, built_cpu = time.perf_counter() - t0, time.process_time() - c0
            fresh_s, fresh_cpu, status = solve(opt, doc, tz)
            warm_s, warm_cpu, warm_status = solve(opt, after, tz)  # next moment, same instance
            out.append({"fresh_s": built_s + fresh_s, "fresh_cpu_s": built_cpu + fresh_cpu,
                        "warm_s": warm_s, "warm_cpu_s": warm_cpu,
                        "status": status, "warm_status": warm_status})
    # HiGHS writes its banner to stdout: the answer is the last line
    print("\n" + json.dumps({"emhass": importlib.metadata.version("emhass"), "moments": out}))


if __name__ == "__main__":
    main()
