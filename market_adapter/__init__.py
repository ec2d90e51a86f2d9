"""GPU markets behind one small interface: offer capacity at a floor, read leases and payouts.

This package never imports `node` or `webui`.
"""
