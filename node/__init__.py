"""The rig and its decisions: config, clock, store, GPUs, roles, planner, ledger, agent, CLI."""
