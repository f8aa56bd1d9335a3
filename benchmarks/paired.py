"""Throughput of our code and of its peer measured in the same run: each timed in alternating slices and the
best slice of each kept, so that load from elsewhere on the machine hits both alike. Shared by the benchmarks
that compare a per-call rate (``bench_codec``, ``bench_mac``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(fn: Callable[[], object], seconds: float, batch: int = 100) -> float:
    """Calls of ``fn`` per second over about ``seconds`` (whole batches, so the clock is read rarely)."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def paired_rates(ours: Callable[[], object], peer: Callable[[], object], seconds: float, repeat: int,
                 batch: int = 100) -> tuple[float, float]:
    """Best rates of ``ours`` and ``peer`` over ``repeat`` alternating slices sharing ``seconds``."""
    best_ours = best_peer = 0.0
    for _ in range(repeat):
        best_ours = max(best_ours, rate(ours, seconds / repeat, batch))
        best_peer = max(best_peer, rate(peer, seconds / repeat, batch))
    return best_ours, best_peer
