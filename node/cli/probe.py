"""`sunrig probe modbus HOST:PORT [--unit N]`: what a Modbus device says, before configuring it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

from energy import sunspec
from energy.modbus import ModbusHub, SunSpecSite
from energy.mqtt import Mapping, MqttSettings, MqttSite
from energy.types import SourceUnavailable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="read a site device once and print what it says")
    inner = p.add_subparsers(required=True, metavar="modbus|mqtt")
    m = inner.add_parser("modbus", help="SunSpec models and one site sample, as JSON")
    m.add_argument("address", metavar="HOST:PORT")
    m.add_argument("--unit", type=int, default=1)
    m.add_argument("--timeout", type=float, default=3.0)
    m.set_defaults(func=cmd_modbus)
    q = inner.add_parser("mqtt", help="wait for one message on a topic and print its value")
    q.add_argument("address", metavar="HOST[:PORT]")
    q.add_argument("--topic", required=True)
    q.add_argument("--json-path", default="", help='e.g. "ENERGY.Power" (Tasmota)')
    q.add_argument("--scale", type=float, default=1.0)
    q.add_argument("--username", default="")
    q.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a message")
    q.set_defaults(func=cmd_mqtt)


def cmd_mqtt(args: argparse.Namespace) -> int:
    host, _, port = args.address.partition(":")
    if not host or (port and not port.isdigit()):
        print(f"probe: {args.address!r} is not HOST[:PORT]", file=sys.stderr)
        return 2
    mapping = Mapping(args.topic, "grid_w", args.json_path, args.scale, args.wait)
    site = MqttSite(MqttSettings(host, int(port or 1883), args.username,
                                 client_id=f"sunrig-probe-{os.getpid()}", mappings=[mapping]))
    site.start()
    try:
        deadline = time.monotonic() + args.wait
        while (time.monotonic() < deadline and not site.received and not site.malformed
               and not site.implausible):
            time.sleep(0.05)
    finally:
        site.stop()
    if site.malformed:
        print(f"probe: {args.topic}: payload not as expected ({sum(site.malformed.values())} "
              "malformed)", file=sys.stderr)
        return 1
    if site.implausible:
        print(f"probe: {args.topic}: a number no site's meter reads (outside "
              f"{site.plausible.limits.grid_w.low:.0f}..{site.plausible.limits.grid_w.high:.0f} "
              "W); check --json-path and --scale", file=sys.stderr)
        return 1
    value = site.fresh().get("grid_w")
    if value is None:
        state = "connected" if site.connected.is_set() else "could not connect"
        print(f"probe: no message on {args.topic} within {args.wait:.0f} s ({state})",
              file=sys.stderr)
        return 1
    print(json.dumps({"topic": args.topic, "value": value}))
    return 0


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
           "implausible": site.implausible,  # by field: values outside what a site allows
           "sample": {k: getattr(sample, k) for k in ("pv_w", "load_w", "grid_w", "battery_w",
                                                      "soc_pct", "stale")}}
    print(json.dumps(doc, indent=2))
    return 0
