"""The online optimum: the most any seller can earn from a market without knowing its orders ahead.

The hindsight optimum knows every order before it comes, its maximum price and its length
included, and so charges each tenant exactly that maximum. A seller who must post a floor first
cannot. This module measures what such a seller can reach at best, so the planner is judged
against a bound it could meet.

The market is the one the planner models (`MarketTerms`): Poisson orders of several sizes,
tenants' maxima log-normal around the expected price, exponential lease lengths, an order lost
when it does not fit or its maximum is below the floor, a lease paying the floor. With exponential
lengths the state is how many leases of each size run, and the best floor for each state solves
an average-reward Markov decision process (uniformised, relative value iteration). The policy may
change its floor at every arrival and departure, which no real offer does, and energy is free
unless a cost is given, so the answer is an upper bound on what a posted floor can earn.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from node.planner import MarketTerms


@dataclass(frozen=True)
class OnlineBound:
    capacity: int
    margin_per_hour: float  # floor minus cost, times GPUs, per hour, on average
    revenue_per_hour: float
    leased_gpus: float  # on average
    # leases running per order size that fits (smallest first) -> the best floor there
    floor_by_state: dict[tuple[int, ...], float]


def online_bound(terms: MarketTerms, capacity: int, cost_per_gpu_hour: float = 0.0,
                 floors: int = 161, tolerance: float = 1e-9,
                 max_iterations: int = 100_000) -> OnlineBound:
    """The best average margin per hour over every floor policy that sees only the present."""
    sizes, weights = _sizes(terms, capacity)
    if capacity <= 0 or not sizes or terms.orders_per_hour <= 0:
        return OnlineBound(max(capacity, 0), 0.0, 0.0, 0.0, {})
    states = [s for s in itertools.product(*(range(capacity // k + 1) for k in sizes))
              if np.dot(s, sizes) <= capacity]
    index = {s: i for i, s in enumerate(states)}
    arr = np.array(states)
    busy = arr @ np.array(sizes)
    leases = arr.sum(axis=1)
    up = [np.array([index.get(_moved(s, j, +1), -1) for s in states]) for j in range(len(sizes))]
    down = [np.array([index.get(_moved(s, j, -1), 0) for s in states]) for j in range(len(sizes))]
    grid = _floor_grid(terms, cost_per_gpu_hour, floors)
    share = np.array([terms.share_paying(f) for f in grid])
    lam, mu, hours = terms.orders_per_hour, 1.0 / terms.mean_lease_hours, terms.mean_lease_hours
    rate = lam + mu * leases.max()  # uniformisation: the fastest any state changes

    def step(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One Bellman update; returns the new values and each state's best floor index."""
        # orders larger than the rig: lost, the state stays
        value = np.repeat(((1.0 - weights.sum()) * h)[:, None], len(grid), axis=1)
        for j, k in enumerate(sizes):
            fits = up[j] >= 0
            gain = (grid - cost_per_gpu_hour) * k * hours  # expected, paid over the lease
            taken = gain[None, :] + np.where(fits, h[up[j]], 0.0)[:, None]
            value += weights[j] * np.where(fits[:, None], share * taken
                                           + (1 - share) * h[:, None], h[:, None])
        best = value.argmax(axis=1)
        leaving = sum(arr[:, j] * mu * h[down[j]] for j in range(len(sizes)))
        new = (lam * value[np.arange(len(states)), best] + leaving
               + (rate - lam - leases * mu) * h) / rate
        return new, best

    h = np.zeros(len(states))
    for _ in range(max_iterations):
        new, best = step(h)
        new -= new[0]
        if np.max(np.abs(new - h)) < tolerance:
            break
        h = new
    margin = (step(h)[0][0] - h[0]) * rate
    policy = grid[best]
    revenue, leased = _stationary(states, arr, leases, sizes, weights, up, down, share[best],
                                  policy, lam, mu, hours)
    floors_by_state = {s: float(policy[i]) for i, s in enumerate(states) if busy[i] < capacity}
    return OnlineBound(capacity, float(margin), revenue, leased, floors_by_state)


def _stationary(states, arr, leases, sizes, weights, up, down, share, policy, lam, mu, hours
                ) -> tuple[float, float]:
    """Revenue per hour and GPUs leased under the chosen floors, from the chain's stationary
    distribution (the margin alone does not say how it splits into price and volume)."""
    n = len(states)
    q = np.zeros((n, n))
    for j in range(len(sizes)):
        fits = up[j] >= 0
        rows = np.nonzero(fits)[0]
        q[rows, up[j][rows]] += lam * weights[j] * share[rows]
        has = arr[:, j] > 0
        rows = np.nonzero(has)[0]
        q[rows, down[j][rows]] += arr[rows, j] * mu
    q[np.arange(n), np.arange(n)] = -q.sum(axis=1)
    a = np.vstack([q.T, np.ones(n)])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    started = sum(lam * weights[j] * share * (up[j] >= 0) * k for j, k in enumerate(sizes))
    revenue = float(np.sum(pi * started * policy) * hours)
    leased = float(pi @ (arr @ np.array(sizes)))
    return revenue, leased


def _sizes(terms: MarketTerms, capacity: int) -> tuple[tuple[int, ...], np.ndarray]:
    pairs = terms.order_sizes or ((max(1, round(terms.mean_gpus_per_order)), 1.0),)
    total = sum(w for _, w in pairs) or 1.0
    # orders larger than the rig are lost whatever the floor: they stay in the arrival rate
    fitting = [(k, w / total) for k, w in pairs if 0 < k <= capacity]
    return tuple(k for k, _ in fitting), np.array([w for _, w in fitting])


def _moved(state: tuple[int, ...], j: int, by: int) -> tuple[int, ...]:
    s = list(state)
    s[j] += by
    return tuple(s)


def _floor_grid(terms: MarketTerms, cost: float, n: int) -> np.ndarray:
    """Floors from the cost (never sell below it) to where almost no tenant pays."""
    top = terms.expected_price_per_gpu_hour * float(np.exp(4 * terms.price_spread))
    low = max(0.0, cost)
    return np.linspace(low, max(top, low + 0.01), n)
