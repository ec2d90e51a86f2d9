"""Planning and economics: what to offer each market, at what floor, and what that earns.

`inputs` turns the site's forecasts and prices into a plan's inputs; `milp` solves the split and
the floors over the horizon (the battery modelled as the site's own controller runs it);
`planner` turns the solution into the plan the agent follows. `policies` are the simple rules a
plan is compared with, `hindsight` and `online_bound` the ceilings it is measured against,
`economics` replays a year of a scenario, and `projection` dates the payback.
"""
