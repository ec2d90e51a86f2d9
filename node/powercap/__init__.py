"""Power limits without running the agent as root: a tiny root helper with one narrow command
(`helper`, its own hardened unit) and the agent's client (`client`)."""
