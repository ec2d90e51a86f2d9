"""`sunrig akash`: the provider's bid-price script, its provider attributes, and the stdin pricing
command for debugging."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from market_adapter.akash import provider_attributes
from market_adapter.akash_bid_server import PRICE_PATH, bid_script, parse_listen
from node.config import DEFAULT_CONFIG_PATH, Config, default_config, load_config
from node.errors import ConfigError
from node.tee_gate import host_preflight
from node.wiring import akash_bid_token, build_inventory

INSTALL_HINT = """\
# This script holds the agent's bid token: it is a secret (keep it out of shared files and logs).
# Install it as the Akash provider chart's bid-price script, base64-encoded:
#   sunrig akash bid-script --config {config} | base64 -w0 > bidpricescript.b64
#   helm upgrade akash-provider akash/provider -n akash-services --reuse-values \\
#     --set bidpricescript="$(cat bidpricescript.b64)"
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("akash", help="Akash provider integration")
    inner = p.add_subparsers(required=True, metavar="bid-script|attributes|price-script")
    script = inner.add_parser("bid-script", help="print the provider's bid-price script, which "
                              "asks this agent's bid endpoint (it holds the bid token)")
    _config_arg(script)
    script.add_argument("--url", help="the bid endpoint as the provider's pod reaches it "
                        "(default: from markets.akash.bid_listen)")
    script.set_defaults(func=_cmd_bid_script)
    attrs = inner.add_parser("attributes", help="provider attributes for this rig; tee/type "
                             "only while `sunrig cc preflight` passes")
    _config_arg(attrs)
    form = attrs.add_mutually_exclusive_group()
    form.add_argument("--helm-values", action="store_true",
                      help="the chart values' attributes: block (the default)")
    form.add_argument("--json", action="store_true")
    attrs.set_defaults(func=_cmd_attributes)
    price = inner.add_parser("price-script", help="price one order on stdin from the offer "
                             "file, as the bid endpoint would (for debugging)")
    price.add_argument("--offer", help="the offer file the agent writes")
    price.set_defaults(func=_cmd_price_script)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"sunrig config (default {DEFAULT_CONFIG_PATH}, or the "
                        "embedded demo when it is missing)")


def _config(args: argparse.Namespace) -> Config:
    path = args.config or (DEFAULT_CONFIG_PATH if Path(DEFAULT_CONFIG_PATH).exists() else None)
    return load_config(path) if path else default_config()


def _cmd_price_script(args: argparse.Namespace) -> int:
    from market_adapter.akash_bid import main as price_script
    return price_script(["--offer", args.offer] if args.offer else [])


def _cmd_bid_script(args: argparse.Namespace) -> int:
    cfg = _config(args)
    url = args.url or bid_url(cfg)
    try:
        script = bid_script(url, akash_bid_token(cfg))
    except ValueError as exc:
        raise ConfigError("command line", "--url", str(exc)) from None
    sys.stdout.write(script)
    print(INSTALL_HINT.format(config=args.config or DEFAULT_CONFIG_PATH), end="",
          file=sys.stderr)
    return 0


def bid_url(cfg: Config) -> str:
    """The endpoint's URL from where it listens; an unspecified address names no host the
    provider could reach, so then the owner gives --url."""
    a = cfg.markets.akash
    host, port = parse_listen(a.bid_listen, allow_any=True)
    if host in ("0.0.0.0", "::"):
        raise ConfigError("command line", "--url", f"is needed: markets.akash.bid_listen "
                          f"{a.bid_listen} names no address the provider's pod could reach; "
                          f"give http://<this node's address>:{port}{PRICE_PATH}")
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{PRICE_PATH}"


def _cmd_attributes(args: argparse.Namespace) -> int:
    cfg = _config(args)
    a = cfg.markets.akash
    model, memory_gib = build_inventory(cfg)
    preflight = host_preflight(cfg)(datetime.now(UTC))
    tee, why = preflight.passed, preflight.summary()
    attrs = provider_attributes(model, memory_gib, a.gpu_interface, tee, a.region, a.gpu_ram)
    if args.json:
        print(json.dumps({"attributes": [{"key": k, "value": v} for k, v in attrs],
                          "tee": tee, "tee_reason": why,
                          "checked": preflight.checked.isoformat()}, indent=2))
    else:  # the chart's values: a list of key and value, both strings
        print("attributes:")
        for k, v in attrs:
            print(f"  - key: {k}\n    value: {json.dumps(v)}")
        print(f"# tee/type: {'included' if tee else 'left out'} ({why})", file=sys.stderr)
    return 0

