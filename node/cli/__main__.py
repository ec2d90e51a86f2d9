"""`python -m node.cli ...` runs the `sunrig` command."""

import sys

from node.cli.entry import main

sys.exit(main())
