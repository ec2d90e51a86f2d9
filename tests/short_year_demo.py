"""`python -m tests.short_year_demo <sunrig demo arguments>`: `sunrig demo` with a week instead
of a year to simulate for the payback page, and that simulation at the agent's own priority: at
the lowest one, a machine kept busy by other work may starve it for as long as that lasts."""

from __future__ import annotations

import sys
from dataclasses import replace

from node import cli
from node.config import default_config
from node.projection import YearProjection

SHORT_YEAR_DAYS = 7


def main() -> int:
    base = default_config()
    short = replace(base, simulation=replace(base.simulation, days=SHORT_YEAR_DAYS))
    cli.default_config = lambda: short  # what `sunrig demo` runs on
    YearProjection.niceness = 0
    return cli.main(["demo", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
