"""The shared transportation solver: optimal where greedy is not, and never infeasible."""

import numpy as np
import pytest

from telehealth.assignment import AssignmentError, greedy_transportation, solve_transportation


def _problem():
    # Two mentees, two one-slot mentors. Greedy takes the cheapest arc (0→0, cost 1)
    # and leaves mentee 1 with the expensive one; the optimum pairs 0→1 and 1→0.
    return {
        "demand": np.array([1, 1]),
        "supply": np.array([1, 1]),
        "arc_demand": np.array([0, 0, 1, 1]),
        "arc_supply": np.array([0, 1, 0, 1]),
        "arc_cost": np.array([1, 2, 2, 100]),
    }


def test_the_optimum_beats_the_greedy_baseline():
    optimal = solve_transportation(**_problem(), unmet_cost=1000)
    greedy = greedy_transportation(**_problem())

    assert optimal.cost == 4
    assert greedy.cost == 101
    assert list(optimal.flow) == [0, 1, 1, 0]


def test_demand_without_supply_is_reported_unmet_not_dropped():
    solution = solve_transportation(
        demand=np.array([1, 1, 1]),
        supply=np.array([2]),
        arc_demand=np.array([0, 1, 2]),
        arc_supply=np.array([0, 0, 0]),
        arc_cost=np.array([5, 1, 3]),
        unmet_cost=1000,
    )

    assert solution.unmet.sum() == 1
    assert solution.unmet[0] == 1  # the most expensive one waits
    assert solution.cost == 4


def test_a_mentor_with_several_slots_takes_several_mentees():
    solution = solve_transportation(
        demand=np.array([1, 1]),
        supply=np.array([4]),
        arc_demand=np.array([0, 1]),
        arc_supply=np.array([0, 0]),
        arc_cost=np.array([7, 7]),
        unmet_cost=1000,
    )

    assert list(solution.flow) == [1, 1]


def test_bad_input_is_refused_clearly():
    with pytest.raises(AssignmentError):
        solve_transportation(
            demand=np.array([1]),
            supply=np.array([1]),
            arc_demand=np.array([0]),
            arc_supply=np.array([3]),
            arc_cost=np.array([1]),
            unmet_cost=10,
        )
