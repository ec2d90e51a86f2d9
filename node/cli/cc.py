"""`sunrig cc ...`: the host's confidential-computing preflight, read-only."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from node.config import DEFAULT_CONFIG_PATH, Config, default_config, load_config
from node.errors import ConfigError
from node.tee_gate import cc_report_path, host_preflight
from tee.preflight import Preflight


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the host preflight commands to the `sunrig` parser."""
    p = sub.add_parser("cc", help="the host's confidential-computing set-up")
    inner = p.add_subparsers(required=True, metavar="preflight")
    pre = inner.add_parser("preflight", help="check, read-only, that this host can pass its "
                           "GPUs into tenants' confidential VMs (exit 0 when every check passes)")
    pre.add_argument("--config", help=f"sunrig config (default {DEFAULT_CONFIG_PATH}, or the "
                     "embedded demo when it is missing)")
    pre.add_argument("--json", action="store_true")
    pre.add_argument("--cc-report", help="the output of `nvidia_gpu_tools.py --devices gpus "
                     "--query-cc-mode` (default: the file the agent reads beside its store)")
    pre.add_argument("--root", default="/", help="read sysfs and procfs under this directory "
                     "(default /)")
    pre.set_defaults(func=_cmd_preflight)


def _config(args: argparse.Namespace) -> Config:
    path = args.config or (DEFAULT_CONFIG_PATH if Path(DEFAULT_CONFIG_PATH).exists() else None)
    return load_config(path) if path else default_config()


def _cmd_preflight(args: argparse.Namespace) -> int:
    cfg = _config(args)
    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError("command line", "--root", f"{args.root} is not a directory")
    report = Path(args.cc_report) if args.cc_report else cc_report_path(cfg)
    result = host_preflight(cfg, root, report)(datetime.now(UTC))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_findings(result)
    return 0 if result.passed else 1


def print_findings(result: Preflight) -> None:
    """One line per check, and under each that fails how to fix it."""
    for f in result.findings:
        print(f"{'PASS' if f.ok else 'FAIL'}  {f.name}: {f.detail}")
        if not f.ok:
            print(f"      fix: {f.fix}")
    verdict = (f"tee/type {result.tee_type} may be advertised" if result.passed
               else f"tee/type is not advertised: {len(result.failed)} check(s) failed")
    print(verdict, file=sys.stderr)
