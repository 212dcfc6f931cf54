"""The learned cost curve and the batch sizes it chooses, driven by injected timings (no model, no
clock): batches grow only while throughput does, never past `max_batch`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imagebind_vectorizer.engine.costs import CostModel


def drive(costs: CostModel, curve: Callable[[int], float], waiting: int, calls: int) -> list[int]:
    """Run `calls` model calls with `waiting` rows always ready, each taking `curve(rows)` seconds."""
    sizes = []
    for _ in range(calls):
        size = costs.batch_size("kind", waiting)
        costs.observe("kind", size, curve(size))
        sizes.append(size)
    return sizes


def test_running_mean_and_interpolation() -> None:
    costs = CostModel(32, alpha=0.5)
    assert costs.seconds("kind", 4) == 0.0 and costs.row_seconds("kind") == 0.0 and not costs.known("kind")
    costs.observe("kind", 1, 1.0)
    costs.observe("kind", 1, 2.0)
    assert costs.seconds("kind", 1) == pytest.approx(1.5)
    costs.observe("kind", 5, 3.5)
    assert costs.seconds("kind", 3) == pytest.approx(2.5)  # between two observed sizes
    assert costs.seconds("kind", 10) == pytest.approx(7.0)  # beyond: the per-row time of the largest
    assert costs.row_seconds("kind") == pytest.approx(0.7)  # the most efficient known size


def test_compute_bound_kind_runs_one_at_a_time() -> None:
    """Seconds grow in proportion to rows (a ViT-H image on a CPU): after one look at a batch of 2,
    items run one by one, each finishing when its own forward does."""
    costs = CostModel(32)
    costs.observe("kind", 1, 3.0)  # the warm-up
    sizes = drive(costs, lambda rows: 3.0 * rows, waiting=8, calls=20)
    assert sizes[0] == 2 and set(sizes[1:]) <= {1, 2}
    assert sizes[1:].count(1) >= 18  # the batch of 2 is re-measured only when its number goes stale


def test_memory_bound_kind_batches_up_to_where_throughput_stops_growing() -> None:
    """Seconds flat up to 8 rows, then per row (a memory-bound encoder that saturates at 8)."""
    costs = CostModel(32)
    sizes = drive(costs, lambda rows: 0.1 * max(rows, 8) / 8, waiting=64, calls=12)
    assert sizes[:5] == [1, 2, 4, 8, 16]  # doubling while it paid, one look past the knee
    assert set(sizes[5:]) == {8}


def test_batches_never_exceed_max_batch_size() -> None:
    costs = CostModel(6)
    sizes = drive(costs, lambda rows: 0.1, waiting=100, calls=10)  # batching always pays
    assert max(sizes) == 6 and sizes[-1] == 6
    assert costs.batch_size("kind", 4) == 4  # fewer waiting than the best size: all of them


def test_a_stale_neighbour_is_measured_again() -> None:
    """One unlucky timing of a batch of 2 must not pin the choice forever."""
    costs = CostModel(32, stale_calls=5)
    costs.observe("kind", 1, 1.0)
    costs.observe("kind", 2, 1.0)  # looked twice as fast as it is
    sizes = drive(costs, lambda rows: 1.0 * rows, waiting=8, calls=30)
    assert sizes[-10:].count(1) >= 7  # the truth about 2 was learned; back to one at a time
