"""`python -m tests.short_year_demo <sunrig demo arguments>`: `sunrig demo` with its year
simulation for the payback page at the agent's own priority: at the lowest one, a machine kept
busy by other work may starve it for as long as that lasts. `short_year_config` writes the
config to give it (`--config`): the embedded default, simulating a week instead of a year."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from node.cli import commands as cli
from node.planning.projection import YearProjection

SHORT_YEAR_DAYS = 7


def short_year_config(path: Path) -> Path:
    """Write the embedded default with a week to simulate to `path`, and return it."""
    text = resources.files("node").joinpath("default.toml").read_text(encoding="utf-8")
    short = text.replace("\n[simulation]\n", f"\n[simulation]\ndays = {SHORT_YEAR_DAYS}\n", 1)
    assert short != text, "the embedded default has no [simulation] table to shorten"
    path.write_text(short, encoding="utf-8")
    return path


def main() -> int:
    YearProjection.niceness = 0
    return cli.main(["demo", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
