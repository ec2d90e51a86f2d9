"""What the site produces, consumes and pays: site readers, tariffs and their simulated peers.

This package never imports `node` or `webui`; it hands back plain dataclasses.
"""
