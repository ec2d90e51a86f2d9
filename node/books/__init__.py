"""The books: every kWh by its source and every lease's money (`ledger`), the daily roll-ups the
pages and payback read (`rollups`), and the lifetime totals `/metrics` and Home Assistant count
from (`totals`)."""
