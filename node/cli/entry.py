"""The `sunrig` command's entry: the Akash bid-price script must answer in milliseconds, so it
is dispatched before the rest of sunrig (Flask, SciPy) is imported."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:2] == ["akash", "price-script"]:
        from market_adapter.akash_bid import main as price_script
        return price_script(args[2:])
    from node.cli.commands import main as full
    return full(args)
