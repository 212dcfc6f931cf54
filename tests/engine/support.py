"""Helpers for engine tests: a gate that holds the model thread inside one trunk block, and a cost
model that answers from an injected curve instead of learning (so tests decide what pays)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from imagebind_vectorizer.engine.costs import CostModel


class BlockGate:
    """Holds whichever thread runs trunk block `block` of `encoder` until `release()`; only the
    first `holds` passes are held. Counts every pass through each block of that encoder."""

    def __init__(self, model: torch.nn.Module, encoder: str, block: int = 0, holds: int = 1) -> None:
        self.entered = threading.Event()
        self._release = threading.Event()
        self._holds = holds
        self.calls: dict[int, int] = {}
        blocks = model.encoders[encoder].trunk.blocks
        self._handles = [b.register_forward_pre_hook(self._hook(i, i == block)) for i, b in enumerate(blocks)]

    def _hook(self, index: int, gated: bool) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any) -> None:
            self.calls[index] = self.calls.get(index, 0) + 1
            if gated and self._holds > 0:
                self._holds -= 1
                self.entered.set()
                self._release.wait(60)

        return hook

    def wait_entered(self, timeout: float = 30) -> None:
        assert self.entered.wait(timeout), "the model never reached the gate"

    def release(self) -> None:
        self._release.set()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.release()


@contextmanager
def gate(model: torch.nn.Module, encoder: str, block: int = 0, holds: int = 1) -> Iterator[BlockGate]:
    held = BlockGate(model, encoder, block, holds)
    try:
        yield held
    finally:
        held.remove()


class FixedCosts(CostModel):
    """Seconds per call from `curve(kind, rows)` at the sizes given, never updated by timings."""

    def __init__(self, max_batch: int, curve: Callable[[str, int], float],
                 sizes: dict[str, tuple[int, ...]]) -> None:
        super().__init__(max_batch)
        for kind, rows in sizes.items():
            for count in rows:
                super().observe(kind, count, curve(kind, count))

    def observe(self, kind: Hashable, rows: int, seconds: float) -> None:
        pass  # the injected curve stays what the test says
