"""The transportation problem, solved as a min-cost flow with OR-Tools.

One solver serves both national jobs: filling mentors' quotas with mentees
(network/) and re-optimising routine referrals across facilities (scheduler/).
Callers build the candidate arcs (with numpy, in batch) and read back which
arcs carry flow; this module knows nothing about doctors or referrals.

Model: demand nodes (a mentee, a referral) each need ``demand[i]`` units;
supply nodes (a mentor's free slots of a kind, a facility's capacity) each give
at most ``supply[j]``. An arc i→j with an integer cost may carry flow. Demand
that cannot be met flows through a "nobody" arc at ``unmet_cost``, so the
problem is always feasible and the optimum first serves as much demand as
possible (when ``unmet_cost`` exceeds every arc cost), then minimises cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow


class AssignmentError(RuntimeError):
    pass


@dataclass(frozen=True)
class TransportSolution:
    flow: np.ndarray  # flow on each candidate arc, same order as the input
    unmet: np.ndarray  # demand left unserved, per demand node
    cost: int  # total cost of the flow on candidate arcs (unmet demand excluded)


def solve_transportation(
    *,
    demand: np.ndarray,
    supply: np.ndarray,
    arc_demand: np.ndarray,
    arc_supply: np.ndarray,
    arc_cost: np.ndarray,
    unmet_cost: int,
    arc_capacity: np.ndarray | None = None,
) -> TransportSolution:
    """Minimum-cost assignment of demand to supply over the given arcs.

    ``demand`` (n), ``supply`` (m): non-negative integers. ``arc_demand``,
    ``arc_supply``: indices into them; ``arc_cost``: non-negative integer costs
    (scale floats before calling); ``arc_capacity``: defaults to 1 per arc (a
    mentee takes a given mentor at most once).
    """
    demand = np.asarray(demand, dtype=np.int64)
    supply = np.asarray(supply, dtype=np.int64)
    arc_demand = np.asarray(arc_demand, dtype=np.int64)
    arc_supply = np.asarray(arc_supply, dtype=np.int64)
    arc_cost = np.asarray(arc_cost, dtype=np.int64)
    n, m, k = len(demand), len(supply), len(arc_cost)
    if not (len(arc_demand) == len(arc_supply) == k):
        raise AssignmentError("arc arrays differ in length")
    if (demand < 0).any() or (supply < 0).any() or (arc_cost < 0).any():
        raise AssignmentError("demand, supply and costs must be non-negative")
    if k and (arc_demand.max() >= n or arc_supply.max() >= m):
        raise AssignmentError("an arc points outside the demand or supply lists")
    capacity = (
        np.ones(k, dtype=np.int64)
        if arc_capacity is None
        else np.asarray(arc_capacity, dtype=np.int64)
    )

    # Nodes: demand 0..n-1, supply n..n+m-1, "nobody" n+m, sink n+m+1.
    nobody, sink = n + m, n + m + 1
    total = int(demand.sum())
    tails = np.concatenate([arc_demand, np.arange(n), n + np.arange(m), [nobody]])
    heads = np.concatenate([n + arc_supply, np.full(n, nobody), np.full(m, sink), [sink]])
    capacities = np.concatenate([capacity, demand, supply, [total]])
    costs = np.concatenate([arc_cost, np.full(n, unmet_cost), np.zeros(m + 1, dtype=np.int64)])
    supplies = np.zeros(n + m + 2, dtype=np.int64)
    supplies[:n] = demand
    supplies[sink] = -total

    solver = min_cost_flow.SimpleMinCostFlow()
    solver.add_arcs_with_capacity_and_unit_cost(tails, heads, capacities, costs)
    solver.set_nodes_supplies(np.arange(n + m + 2), supplies)
    status = solver.solve()
    if status != solver.OPTIMAL:
        raise AssignmentError(f"min-cost flow ended with status {status}")
    flows = solver.flows(np.arange(len(tails)))
    flow = flows[:k]
    unmet = flows[k : k + n]
    return TransportSolution(flow=flow, unmet=unmet, cost=int((flow * arc_cost).sum()))


def greedy_transportation(
    *,
    demand: np.ndarray,
    supply: np.ndarray,
    arc_demand: np.ndarray,
    arc_supply: np.ndarray,
    arc_cost: np.ndarray,
) -> TransportSolution:
    """The baseline a person would write: take the cheapest arcs first while both ends
    have room. Used by benchmarks to show what the optimisation buys."""
    demand_left = np.asarray(demand, dtype=np.int64).copy()
    supply_left = np.asarray(supply, dtype=np.int64).copy()
    arc_cost = np.asarray(arc_cost, dtype=np.int64)
    flow = np.zeros(len(arc_cost), dtype=np.int64)
    for arc in np.argsort(arc_cost, kind="stable"):
        i, j = arc_demand[arc], arc_supply[arc]
        if demand_left[i] > 0 and supply_left[j] > 0:
            flow[arc] = 1
            demand_left[i] -= 1
            supply_left[j] -= 1
    return TransportSolution(flow=flow, unmet=demand_left, cost=int((flow * arc_cost).sum()))
