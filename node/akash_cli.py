"""`sunrig akash`: the bid-price script and the provider attributes for this rig."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from market_adapter.akash import provider_attributes
from node.attest import trust_from_config
from node.config import DEFAULT_CONFIG_PATH, default_config, load_config
from node.wiring import build_inventory, tee_source
from tee.attest import attest
from tee.evidence import TeeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("akash", help="Akash provider integration")
    inner = p.add_subparsers(required=True, metavar="price-script|attributes")
    script = inner.add_parser("price-script", help="price one order on stdin from the offer file "
                              "(the provider's bid-price script)")
    script.add_argument("--offer", help="the offer file the agent writes")
    script.set_defaults(func=_cmd_price_script)
    attrs = inner.add_parser("attributes", help="provider attributes for this rig's GPUs")
    attrs.add_argument("--config", help=f"sunrig config (default {DEFAULT_CONFIG_PATH}, or the "
                       "embedded demo when it is missing)")
    attrs.add_argument("--json", action="store_true")
    attrs.set_defaults(func=_cmd_attributes)


def _cmd_price_script(args: argparse.Namespace) -> int:
    from market_adapter.akash_bid import main as price_script
    return price_script(["--offer", args.offer] if args.offer else [])


def _cmd_attributes(args: argparse.Namespace) -> int:
    path = args.config or (DEFAULT_CONFIG_PATH if Path(DEFAULT_CONFIG_PATH).exists() else None)
    cfg = load_config(path) if path else default_config()
    model, memory_gib = build_inventory(cfg)
    tee, why = False, "no confidential-computing GPU here"
    source = tee_source(cfg)
    if source is not None:
        try:
            _, verdict = attest(source, trust_from_config(cfg.tee), tsm_root=Path(
                cfg.tee.configfs_tsm))
            tee, why = verdict.passed, "attestation " + ("passed" if verdict.passed else "failed")
        except TeeError as exc:
            why = f"attestation could not run: {exc}"
    attrs = provider_attributes(model, memory_gib, cfg.markets.akash.gpu_interface, tee)
    if args.json:
        print(json.dumps({"attributes": [{"key": k, "value": v} for k, v in attrs],
                          "tee": tee, "tee_reason": why,
                          "checked": datetime.now(UTC).isoformat()}, indent=2))
    else:  # the provider's helm values / provider.yaml attribute list
        print("attributes:")
        for k, v in attrs:
            print(f"  - key: {k}\n    value: \"{v}\"")
        print(f"# tee/type: {'included' if tee else 'left out'} ({why})", file=sys.stderr)
    return 0
