"""Timing contenders side by side, and what one timed group holds.

Method: every contender of one group (a setting and cell, or a cell and seed count) is compiled and
warmed up (`--warmup` steps), then timed in `--rounds` rounds; a round runs each contender for n steps
back to back, blocking on the result (`block_until_ready`), in the order ours, flax..., torch, and
reversed in every other round (A B B A ...), so slow drifts of a shared machine hit every contender
alike. n is the smallest count making the first contender (ours) take `--min_round_s`. A table gives
the median over rounds of ms per step and `ratio = other / ours`: above 1 means ours is faster.
"""

import dataclasses
import math
import statistics
import time
from typing import Any

from benchmarks.speed_presets import Options, Setting


@dataclasses.dataclass
class Group:
    """Median ms/step of every contender of one (setting, cell)."""

    setting: Setting
    cell: str
    steps_per_round: int
    ms: dict[str, float]  # contender name -> median ms per step
    spread: dict[str, float]  # contender name -> interquartile range / median over rounds
    num_seeds: int = 1  # every step trains this many seeds

    @property
    def gflops(self) -> float:
        return self.num_seeds * self.setting.train_flops(self.cell) / (self.ms["ours"] / 1e3) / 1e9


def time_contenders(contenders: list[Any], rounds: int, warmup: int, min_round_s: float) -> tuple[int, dict, dict]:
    """Warm up (compile) all, then alternate them for `rounds` rounds.

    Returns the steps per round and, by contender name, the median ms per step over rounds and the
    interquartile range / median.
    """
    for c in contenders:
        c.run(max(warmup, 1))
    t0 = time.perf_counter()
    contenders[0].run(1)
    one = time.perf_counter() - t0
    n = max(1, math.ceil(min_round_s / max(one, 1e-9)))
    per_step: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(rounds):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            t0 = time.perf_counter()
            c.run(n)
            per_step[c.name].append((time.perf_counter() - t0) / n)
    for c in contenders:
        c.check()
    ms = {name: 1e3 * statistics.median(ts) for name, ts in per_step.items()}
    return n, ms, {name: relative_iqr(ts) for name, ts in per_step.items()}


def relative_iqr(values: list[float]) -> float:
    """Interquartile range / median of `values` (0 for fewer than 2)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / statistics.median(values)


@dataclasses.dataclass
class SeedsGroup:
    """Median ms per step of all `num_seeds` seeds, vmapped and sequential, of one cell."""

    cell: str
    num_seeds: int
    steps_per_round: int
    ms: dict[str, float]  # "vmapped" / "sequential" -> median ms per step of all seeds
    spread: dict[str, float]


def timing_note(options: Options, groups: list[Any]) -> str:
    """The line under a table: rounds, steps per round, warm-up, and the largest spread over rounds."""
    low, high = min(g.steps_per_round for g in groups), max(g.steps_per_round for g in groups)
    worst = max((s for g in groups for s in g.spread.values()), default=0.0)
    return (
        f"Median over {options.rounds} alternating rounds of {low if low == high else f'{low}-{high}'} step(s) "
        f"each, after {options.warmup} warm-up step(s); largest interquartile range / median over rounds: {worst:.0%}."
    )
