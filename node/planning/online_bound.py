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

from node.planning.planner import MarketTerms


@dataclass(frozen=True)
class OnlineBound:
    capacity: int
    margin_per_hour: float  # floor minus cost, times GPUs, per hour, on average
    revenue_per_hour: float
    leased_gpus: float  # on average
    # leases running per order size that fits (smallest first) -> the best floor there
    floor_by_state: dict[tuple[int, ...], float]


@dataclass(frozen=True)
class _Chain:
    """The market as a Markov chain over the leases running, one row per state."""

    terms: MarketTerms
    sizes: tuple[int, ...]  # order sizes that fit the rig, smallest first
    weights: np.ndarray  # their shares of all orders (larger orders are lost)
    counts: np.ndarray  # leases running per size
    up: list[np.ndarray]  # per size: the state after such a lease starts, -1 if it cannot
    down: list[np.ndarray]  # per size: the state after one such lease ends

    @classmethod
    def build(cls, terms: MarketTerms, capacity: int, sizes: tuple[int, ...],
              weights: np.ndarray) -> _Chain:
        states = [s for s in itertools.product(*(range(capacity // k + 1) for k in sizes))
                  if np.dot(s, sizes) <= capacity]
        index = {s: i for i, s in enumerate(states)}
        moves = range(len(sizes))
        return cls(terms, sizes, weights, np.array(states),
                   [np.array([index.get(_moved(s, j, +1), -1) for s in states]) for j in moves],
                   [np.array([index.get(_moved(s, j, -1), 0) for s in states]) for j in moves])

    @property
    def busy(self) -> np.ndarray:
        return self.counts @ np.array(self.sizes)

    @property
    def leases(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    @property
    def arrivals(self) -> float:
        return self.terms.orders_per_hour

    @property
    def ending(self) -> float:  # per lease and hour
        return 1.0 / self.terms.mean_lease_hours


def online_bound(terms: MarketTerms, capacity: int, cost_per_gpu_hour: float = 0.0,
                 floors: int = 161, tolerance: float = 1e-9,
                 max_iterations: int = 100_000) -> OnlineBound:
    """The best average margin per hour over every floor policy that sees only the present."""
    sizes, weights = _sizes(terms, capacity)
    if capacity <= 0 or not sizes or terms.orders_per_hour <= 0:
        return OnlineBound(max(capacity, 0), 0.0, 0.0, 0.0, {})
    chain = _Chain.build(terms, capacity, sizes, weights)
    grid = _floor_grid(terms, cost_per_gpu_hour, floors)
    share = np.array([terms.share_paying(f) for f in grid])
    gain = grid - cost_per_gpu_hour
    rate = chain.arrivals + chain.ending * chain.leases.max()  # uniformisation
    h = np.zeros(len(chain.counts))
    for _ in range(max_iterations):  # relative value iteration
        new, best = _bellman(chain, gain, share, rate, h)
        new -= new[0]
        if np.max(np.abs(new - h)) < tolerance:
            break
        h = new
    margin = (_bellman(chain, gain, share, rate, h)[0][0] - h[0]) * rate
    policy = grid[best]
    revenue, leased = _stationary(chain, policy)
    states = [tuple(int(n) for n in row) for row in chain.counts]
    free = chain.busy < capacity
    return OnlineBound(capacity, float(margin), revenue, leased,
                       {s: float(policy[i]) for i, s in enumerate(states) if free[i]})


def _bellman(chain: _Chain, margin: np.ndarray, share: np.ndarray, rate: float, h: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """One update of the uniformised chain, over floors with this margin per GPU-hour and this
    share of tenants paying: the new values and each state's best floor."""
    hours = chain.terms.mean_lease_hours
    value = np.repeat(((1.0 - chain.weights.sum()) * h)[:, None], len(share), axis=1)
    for j, k in enumerate(chain.sizes):
        fits = chain.up[j] >= 0
        gain = margin * k * hours  # expected, paid over the lease
        taken = gain[None, :] + np.where(fits, h[chain.up[j]], 0.0)[:, None]
        value += chain.weights[j] * np.where(fits[:, None], share * taken
                                             + (1 - share) * h[:, None], h[:, None])
    best = value.argmax(axis=1)
    leaving = sum(chain.counts[:, j] * chain.ending * h[chain.down[j]]
                  for j in range(len(chain.sizes)))
    stay = (rate - chain.arrivals - chain.leases * chain.ending) * h
    new = (chain.arrivals * value[np.arange(len(h)), best] + leaving + stay) / rate
    return new, best


def _stationary(chain: _Chain, policy: np.ndarray) -> tuple[float, float]:
    """Revenue per hour and GPUs leased under the chosen floors, from the chain's stationary
    distribution (the margin alone does not say how it splits into price and volume)."""
    n = len(chain.counts)
    share = np.array([chain.terms.share_paying(f) for f in policy])
    q = np.zeros((n, n))
    started = np.zeros(n)  # GPUs leased per hour, by state
    for j, k in enumerate(chain.sizes):
        rows = np.nonzero(chain.up[j] >= 0)[0]
        q[rows, chain.up[j][rows]] += chain.arrivals * chain.weights[j] * share[rows]
        started[rows] += chain.arrivals * chain.weights[j] * share[rows] * k
        rows = np.nonzero(chain.counts[:, j] > 0)[0]
        q[rows, chain.down[j][rows]] += chain.counts[rows, j] * chain.ending
    q[np.arange(n), np.arange(n)] = -q.sum(axis=1)
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(np.vstack([q.T, np.ones(n)]), b, rcond=None)[0]
    revenue = float(np.sum(pi * started * policy) * chain.terms.mean_lease_hours)
    return revenue, float(pi @ chain.busy)


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
