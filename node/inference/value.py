"""What a GPU-hour kept local is worth to the owner, as measured: the tokens local inference
served, at the owner's reference prices (the booked local value), over the GPU-hours the rig
spent in the local role, both over the last days.

The planner weighs it beside the market's price: a soft reservation's GPU-hour that a lease
would hold costs the owner the dearer of the two.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from node.storage.store import Store, epoch

VALUE_DAYS = 7
MIN_LOCAL_GPU_HOURS = 1.0  # less than this measured: too little to call it a rate


def local_value_per_gpu_hour(store: Store, now: datetime, days: int = VALUE_DAYS
                             ) -> float | None:
    """The booked local value per local GPU-hour over the last `days` local days (today
    included); None where the rig spent too little time local to say."""
    first = now.astimezone(store.tz).date() - timedelta(days=days - 1)
    since = datetime.combine(first, time(), tzinfo=store.tz)
    hours = store.query("SELECT coalesce(sum(interval_s), 0) / 3600.0 AS h FROM gpu_samples "
                        "WHERE role = 'local' AND ts >= ? AND ts <= ?",
                        [epoch(since), epoch(now)])[0]["h"]
    if hours < MIN_LOCAL_GPU_HOURS:
        return None
    value = store.query("SELECT coalesce(sum(amount), 0) AS v FROM local_value_bookings "
                        "WHERE day >= ?", [first.isoformat()])[0]["v"]
    return value / hours


def with_local_value(market_price: float | None, store: Store, now: datetime) -> float | None:
    """A reserved GPU-hour's price to the planner: the market's (None: a strict reservation,
    never planned away), raised to the local value of a GPU-hour where that is higher."""
    if market_price is None:
        return None
    local = local_value_per_gpu_hour(store, now)
    return market_price if local is None else max(market_price, local)
