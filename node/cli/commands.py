"""The `sunrig` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, tzinfo
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from energy.series import SeriesError
from market_adapter.base import MarketError
from node import attest
from node.cli import akash as akash_cli
from node.cli import cc as cc_cli
from node.cli import probe as probe_cli
from node.cli import simulate as simulate_cli
from node.cli import tee as tee_cli
from node.config import DEFAULT_CONFIG_PATH, Config, default_config, load_config
from node.errors import ConfigError
from node.gpus import GpuError
from node.inference import cli as users_cli
from node.inference.view import status_lines
from node.storage.backup import BackupError

EXIT_CONFIG = 2
DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_START = 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SeriesError as exc:  # a data file the config names
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (GpuError, MarketError, BackupError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_START


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sunrig", description="GPU rig energy and market agent")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--version", action="version", version=f"sunrig {_version()}")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent on a real rig")
    run.add_argument("--config", default=DEFAULT_CONFIG_PATH)
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run on the embedded default (simulated rig, site, "
                          "market) or on --config FILE, with the demo's store and port")
    demo.add_argument("--speed", type=float, default=120.0,
                      help="simulated seconds per real second (default 120)")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--data-dir", default="var/demo", help="where the demo keeps its store")
    demo.add_argument("--local-port", type=int, default=None,
                      help="the local inference gateway's port (default the dashboard's + 1)")
    demo.add_argument("--config", default=None,
                      help="run on this config's settings instead of the embedded default; "
                      "its store path and dashboard port give way to --data-dir and --port")
    demo.set_defaults(func=_cmd_demo)

    attest.add_parser(sub)
    akash_cli.add_parser(sub)
    users_cli.add_parser(sub)
    probe_cli.add_parser(sub)
    simulate_cli.add_parsers(sub)
    tee_cli.add_parsers(sub)
    cc_cli.add_parsers(sub)

    status = sub.add_parser("status", help="show the running agent's state")
    status.add_argument("--config", help="read the dashboard's address from this config")
    status.add_argument("--url", default=None, help=f"default {DEFAULT_URL}")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)

    for name, helptext in (("backup", "copy the store to FILE, safe while the agent runs"),
                           ("restore", "replace the store with FILE (the agent must be stopped)")):
        p_b = sub.add_parser(name, help=helptext)
        p_b.add_argument("file")
        p_b.add_argument("--config", default=DEFAULT_CONFIG_PATH)
        p_b.set_defaults(func=_cmd_backup if name == "backup" else _cmd_restore)

    migrate = sub.add_parser("migrate", help="bring the store to this version's schema")
    migrate.add_argument("--config", default=DEFAULT_CONFIG_PATH)
    migrate.set_defaults(func=_cmd_migrate)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a config file (exit 0 or 2)")
    check.add_argument("file")
    check.set_defaults(func=_cmd_config_check)
    return p


def _version() -> str:
    try:
        return version("sunrig")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _cmd_run(args: argparse.Namespace) -> int:
    from node.service import serve
    from node.wiring import refuse_simulated

    cfg = load_config(args.config)
    refuse_simulated(cfg, args.config)  # real books take no simulated money or power
    return serve(cfg)


def _cmd_demo(args: argparse.Namespace) -> int:
    from node.service import demo_config, demo_inference, serve

    if args.speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return EXIT_CONFIG
    base = load_config(args.config) if args.config else default_config()
    cfg = demo_config(base, Path(args.data_dir), args.port)
    cfg = demo_inference(cfg, args.local_port or args.port + 1)
    print(f"sunrig demo: a simulated rig, site and market at {args.speed:g}x real time, "
          f"kept in {args.data_dir}\n  dashboard: {dashboard_url(cfg)}\n"
          "  Ctrl-C stops it; it resumes where it stopped", flush=True)
    return serve(cfg, speed=args.speed)


def dashboard_url(cfg: Config) -> str:
    """Where a browser on the rig opens the dashboard this config serves."""
    return f"http://{_browsable(cfg.webui.host)}:{cfg.webui.port}"


def _browsable(host: str) -> str:
    """An address a browser on this machine can open for the host the server binds."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _cmd_backup(args: argparse.Namespace) -> int:
    from node.storage.backup import backup

    size = backup(load_config(args.config).store.path, args.file)
    print(f"backed up to {args.file} ({size / 1e6:.1f} MB)")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from node.storage.backup import restore

    store = load_config(args.config).store.path
    restore(args.file, store)
    print(f"restored {store} from {args.file}")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from node.storage.backup import StoreLock
    from node.storage.store import Store

    cfg = load_config(args.config)
    with StoreLock(cfg.store.path):
        Store(cfg.store.path, cfg.site.timezone).close()  # opening applies pending migrations
    print(f"{cfg.store.path}: schema up to date")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    """Validate the file and every file it names; name each part the agent would run with,
    and warn on stderr of each simulated one (still exit 0: a demo config is valid)."""
    from node.wiring import config_file_problems, parts_used, still_needs

    cfg = load_config(args.file)
    problems = config_file_problems(cfg, args.file)
    for problem in problems:
        print(f"config error: {problem}", file=sys.stderr)
    for part in parts_used(cfg):
        print(f"  {part.role}: {part.name}" + (" [SIMULATED]" if part.simulated else ""))
        if part.simulated:
            print(f"WARNING: SIMULATED {part.role.upper()}: {part.name}; "
                  + _what_run_does(part), file=sys.stderr)
    needs = still_needs(cfg)
    if needs:  # the agent runs without them, but does not yet do the rig's whole job
        print("still needs configuring:")
    for need in needs:
        print(f"  - {need}")
    if problems:
        return EXIT_CONFIG
    print(f"{args.file}: ok")
    return 0


def _what_run_does(part) -> str:
    if not part.allow_key:
        return "its values are not this day's"
    if part.allowed:
        return f"`sunrig run` runs it, as {part.allow_key} = true allows, booking nothing real"
    return f"`sunrig run` refuses it unless {part.allow_key} = true"


def _cmd_status(args: argparse.Namespace) -> int:
    url = args.url
    if url is None:
        url = dashboard_url(load_config(args.config)) if args.config else DEFAULT_URL
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/status", timeout=5) as resp:
            status = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"cannot reach the agent at {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def format_status(s: dict) -> str:
    """The status as a few lines for a person: times in the site's zone, power in kW with the
    battery and the grid's direction, so what comes in and what goes out visibly add up."""
    cur = s["currency"]
    zone = _zone(s.get("timezone"))
    speed = s["clock_speed"]
    lines = [f"{s['site_name']}, {_local_time(s['ts'], zone)}"
             + (f" (simulated, {speed:g}x real time)" if speed != 1 else "")]
    lines += _power_lines(s.get("site") or {}, s["rig_power_w"])
    if s.get("price"):
        lines.append(f"price now: import {s['price']['import_per_kwh']:.3f}, "
                     f"feed-in {s['price']['export_per_kwh']:.3f} {cur}/kWh")
    r = s["roles"]
    lines.append(f"gpus: {r['local']} for the owner, {r['market']} on the market, "
                 f"{r['parked']} parked")
    for g in s["gpus"]:
        lease = f" lease {g['lease_id']}" if g["lease_id"] else ""
        lines.append(f"  [{g['index']}] {g['name']:<14} {g['role']:<7}{lease} {_w(g['power_w'])}")
    lines.append(f"leases: {len(s['leases'])} active")
    t = s["today"]
    lines.append(f"today: revenue {t['revenue']:.2f} {cur}, energy {t['energy_cost']:.2f} {cur}, "
                 f"net {t['net']:.2f} {cur}")
    lines.append(_payback_line(s["payback"], cur))
    lines.extend(status_lines(s.get("local_inference") or {}))
    if not s["healthy"]:
        failing = [n for n, j in s["jobs"].items() if not j["ok"]]
        lines.append(f"failing jobs: {', '.join(failing)}")
    return "\n".join(lines)


def _power_lines(site: dict, rig_w: float) -> list[str]:
    """Where the site's power comes from and where it goes, as the dashboard's flows place it:
    the meters are read seconds apart and never balance exactly, and the flows are the one
    split of them (the books' too) in which what comes in is what goes out."""
    if not site:
        return [f"power: no site reading yet; the rig draws {_w(rig_w)}"]
    soc = f", battery at {site['soc_pct']:.0f} %" if site.get("soc_pct") is not None else ""
    if site.get("stale") or not site.get("flows"):
        return [f"power: the site's last reading is stale; the rig draws {_w(rig_w)}{soc}"]
    into: dict[str, float] = {}
    out: dict[str, float] = {}
    for f in site["flows"]:
        into[f["from"]] = into.get(f["from"], 0.0) + f["power_w"]
        out[f["to"]] = out.get(f["to"], 0.0) + f["power_w"]
    return [f"power in:  {_sum(into, SOURCE_NAMES)}{soc}", f"power out: {_sum(out, SINK_NAMES)}"]


SOURCE_NAMES = {"pv": "solar", "battery": "battery", "grid": "grid import"}
SINK_NAMES = {"house": "house", "rig": "rig", "battery": "battery charging",
              "grid": "grid export"}


def _sum(parts: dict[str, float], names: dict[str, str]) -> str:
    """'7.11 kW = solar 5.00 kW + grid import 2.11 kW', in a fixed order."""
    named = " + ".join(f"{names[k]} {_w(parts[k])}" for k in names if k in parts)
    return f"{_w(sum(parts.values()))} = {named}"


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _local_time(iso: str | None, zone: tzinfo) -> str:
    """'2024-06-12 13:45 CEST' from the API's UTC stamp: the site's clock, to the minute."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _payback_line(p: dict, cur: str) -> str:
    """The payback dates read as the dashboard reads them: the simulated year's first, the last
    30 days' pace only once there are 30 days of it, and neither past the horizon."""
    if not p["capex"]:
        return "payback: no CapEx set"
    sim = (p.get("simulation") or {}).get("outlook")
    dates = [f"{outlook_text(sim)} at the simulated year's pace"] if sim else []
    if p.get("pace"):
        dates.append(f"{outlook_text(p['pace'])} at the last 30 days' pace")
    return (f"payback: {p['paid_back_pct']:.1f} % of {p['capex']:,.0f} {cur}"
            + ("; " + ", ".join(dates) if dates else ""))


def outlook_text(o: dict) -> str:
    """A projection's outlook (node.planning.projection.outlook) in words."""
    if o["state"] == "young":
        days = o.get("history_days") or 0
        return f"not enough history yet ({days} day{'' if days == 1 else 's'})"
    if o["state"] == "never":
        return "not reached"
    if o["state"] == "beyond":
        return f"later than {o['horizon'][:4]}"
    return o["date"]


def _w(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f} kW"


if __name__ == "__main__":
    sys.exit(main())
