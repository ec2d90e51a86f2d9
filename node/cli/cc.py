"""`sunrig cc ...`: the host's confidential-computing preflight, read-only."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the host preflight commands to the `sunrig` parser."""
