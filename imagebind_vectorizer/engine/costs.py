"""How long a model call takes, per input kind and number of forward passes (rows), learned from
the engine's own timings; and from that, how many rows a batch should hold.

One engine runs one model on one device in one dtype, so (kind, rows) is the whole key. Each
observed call updates an exponentially weighted mean of its seconds; sizes never observed are
interpolated between observed ones, and beyond the largest observed size assumed to gain nothing
(per-row time stays flat) until tried.

Batching pays only where throughput (rows per second) grows with the batch: memory-bound encoders
(a short text on a CPU, anything on a GPU) gain a lot, compute-bound ones (a ViT-H image on a CPU)
nothing, and there a batch only makes every item wait for the whole batch. So a batch is the
smallest size whose throughput is within `min_gain` of the best known, and sizes are explored by
doubling only while doubling paid. The neighbours of the chosen size are measured again when their
numbers grow stale, so one unlucky timing cannot pin a wrong choice forever."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

#: weight of the newest observation in the running mean
EWMA_ALPHA = 0.3
#: a larger batch must raise throughput by this share to be worth its added latency
MIN_GAIN = 0.1
#: re-measure a neighbouring size after this many calls of the kind at other sizes
STALE_CALLS = 32


@dataclass
class _Point:
    seconds: float
    last_call: int  # the kind's call counter when this size was last observed


@dataclass
class _Curve:
    points: dict[int, _Point] = field(default_factory=dict)
    calls: int = 0


class CostModel:
    def __init__(self, max_batch: int, *, alpha: float = EWMA_ALPHA, min_gain: float = MIN_GAIN,
                 stale_calls: int = STALE_CALLS) -> None:
        self.max_batch = max_batch
        self.alpha, self.min_gain, self.stale_calls = alpha, min_gain, stale_calls
        self._curves: dict[Hashable, _Curve] = {}

    # Learning ---------------------------------------------------------------------------------
    def observe(self, kind: Hashable, rows: int, seconds: float) -> None:
        """One model call of `rows` forward passes took `seconds` (its own compute, not waiting)."""
        if rows < 1 or seconds <= 0:
            return
        curve = self._curves.setdefault(kind, _Curve())
        curve.calls += 1
        point = curve.points.get(rows)
        if point is None:
            curve.points[rows] = _Point(seconds, curve.calls)
        else:
            point.seconds += self.alpha * (seconds - point.seconds)
            point.last_call = curve.calls

    # Estimates --------------------------------------------------------------------------------
    def known(self, kind: Hashable) -> bool:
        return bool(self._curves.get(kind, _Curve()).points)

    def seconds(self, kind: Hashable, rows: int) -> float:
        """Expected seconds of one call of `rows` rows; 0.0 while nothing is known of the kind."""
        curve = self._curves.get(kind)
        if curve is None or not curve.points or rows <= 0:
            return 0.0
        if rows in curve.points:
            return curve.points[rows].seconds
        below = max((s for s in curve.points if s < rows), default=None)
        above = min((s for s in curve.points if s > rows), default=None)
        if below is not None and above is not None:
            low, high = curve.points[below].seconds, curve.points[above].seconds
            return low + (high - low) * (rows - below) / (above - below)
        nearest = below if below is not None else above
        assert nearest is not None
        return curve.points[nearest].seconds * rows / nearest  # flat per-row time beyond what is known

    def throughput(self, kind: Hashable, rows: int) -> float:
        """Expected rows per second at a batch of `rows`; 0.0 while unknown."""
        seconds = self.seconds(kind, rows)
        return rows / seconds if seconds > 0 else 0.0

    def row_seconds(self, kind: Hashable) -> float:
        """Seconds per forward pass at the kind's most efficient known batch size: what a row
        adds to the queue's expected wait under load. 0.0 while unknown."""
        curve = self._curves.get(kind)
        if curve is None or not curve.points:
            return 0.0
        return min(p.seconds / s for s, p in curve.points.items() if s <= self.max_batch) \
            if any(s <= self.max_batch for s in curve.points) else 0.0

    # Batch sizing -----------------------------------------------------------------------------
    def batch_size(self, kind: Hashable, waiting: int) -> int:
        """Rows for the next call of `kind` when `waiting` rows are ready: at most `max_batch`,
        no more than pays, and now and then a neighbouring size to keep the curve honest."""
        limit = min(waiting, self.max_batch)
        curve = self._curves.get(kind)
        if limit <= 1:
            return max(limit, 0)
        if curve is None or not curve.points:
            return 1  # nothing known yet: one row first, to learn from
        best = self.preferred_size(kind, limit)
        measured = sorted(curve.points)
        top = measured[-1]
        # Explore upwards by doubling while the top of the known curve is still where it pays.
        if best == min(top, limit) and top < limit:
            return min(top * 2, limit)
        # Keep the neighbours of the choice measured: one call at a neighbouring size is cheap.
        for neighbour in (max((s for s in measured if s < best), default=None),
                          min((s for s in measured if best < s <= limit), default=None)):
            if neighbour is not None and curve.calls - curve.points[neighbour].last_call >= self.stale_calls:
                return neighbour
        return best

    def preferred_size(self, kind: Hashable, limit: int) -> int:
        """The smallest batch (up to `limit`) whose throughput is within `min_gain` of the best
        one known; sizes between known ones are interpolated."""
        curve = self._curves.get(kind)
        if curve is None or not curve.points or limit <= 1:
            return max(min(limit, 1), 0)
        sizes = sorted({s for s in curve.points if s <= limit} | {limit, 1})
        rates = {s: self.throughput(kind, s) for s in sizes}
        peak = max(rates.values())
        return next(s for s in sizes if rates[s] * (1 + self.min_gain) >= peak)

    def describe(self, kind: Hashable) -> dict[int, float]:
        """rows -> seconds as learned so far (for logs)."""
        curve = self._curves.get(kind)
        return {s: round(p.seconds, 6) for s, p in sorted(curve.points.items())} if curve else {}
