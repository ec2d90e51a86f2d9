"""`sunrig probe modbus HOST:PORT [--unit N]`: what a Modbus device says, before configuring it."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from energy import sunspec
from energy.modbus import ModbusHub, SunSpecSite
from energy.types import SourceUnavailable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="read a site device once and print what it says")
    inner = p.add_subparsers(required=True, metavar="modbus")
    m = inner.add_parser("modbus", help="SunSpec models and one site sample, as JSON")
    m.add_argument("address", metavar="HOST:PORT")
    m.add_argument("--unit", type=int, default=1)
    m.add_argument("--timeout", type=float, default=3.0)
    m.set_defaults(func=cmd_modbus)


def cmd_modbus(args: argparse.Namespace) -> int:
    host, _, port = args.address.rpartition(":")
    if not host or not port.isdigit():
        print(f"probe: {args.address!r} is not HOST:PORT", file=sys.stderr)
        return 2
    hub = ModbusHub(timeout_s=args.timeout)
    site = SunSpecSite(hub.link(host, int(port)), (args.unit,))
    try:
        models = site.models(args.unit)
        points = site.points()
        sample = site.read(datetime.now(UTC))
    except SourceUnavailable as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    finally:
        hub.close()
    doc = {"unit": args.unit,
           "models": [{"id": m.model_id, "address": m.address, "length": m.length,
                       "known": m.model_id in sunspec.MODELS} for m in models],
           "points": {str(k): v for k, v in points.items()},
           "sample": {k: getattr(sample, k) for k in ("pv_w", "load_w", "grid_w", "battery_w",
                                                      "soc_pct", "stale")}}
    print(json.dumps(doc, indent=2))
    return 0
