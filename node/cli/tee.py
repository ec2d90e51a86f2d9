"""`sunrig verify-lease` and the offline freshness bundle: what a tenant runs to check a lease."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the tenant's verification commands to the `sunrig` parser."""
