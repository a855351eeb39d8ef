"""KL annealing: schedules for beta as a function of the optimisation step.

Written as ``constant``, ``linear:S`` (warm up from 0 to beta over S steps) or
``cyclical:P[:R]`` (cycles of P steps, each rising linearly from 0 to beta over
the first fraction R of the cycle, then holding; R defaults to 0.5).

References: S. R. Bowman et al., "Generating Sentences from a Continuous Space", CoNLL 2016;
H. Fu et al., "Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing", NAACL 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SCHEDULES = ("constant", "linear:STEPS", "cyclical:PERIOD[:RATIO]")


@dataclass(frozen=True)
class Constant:
    """beta at every step."""

    beta: float

    def __call__(self, step: int) -> float:
        return self.beta


@dataclass(frozen=True)
class LinearWarmup:
    """beta rising linearly from 0 over ``steps`` steps, then constant (Bowman et al., 2016)."""

    beta: float
    steps: int  # beta reaches its final value after this many steps

    def __call__(self, step: int) -> float:
        return self.beta * min(1.0, step / self.steps)


@dataclass(frozen=True)
class Cyclical:
    """beta rising from 0 over the first ``ratio`` of every ``period`` steps, then constant (Fu et al., 2019)."""

    beta: float
    period: int  # steps per cycle
    ratio: float = 0.5  # fraction of each cycle spent rising from 0 to beta

    def __call__(self, step: int) -> float:
        phase = (step % self.period) / self.period
        return self.beta * min(1.0, phase / self.ratio)


def parse_schedule(spec: str, beta: float) -> Callable[[int], float]:
    """Turn ``spec`` (see :data:`SCHEDULES`) into a schedule ending at ``beta``."""
    name, *params = spec.split(":")
    try:
        if name == "constant" and not params:
            return Constant(beta)
        if name == "linear" and len(params) == 1 and int(params[0]) > 0:
            return LinearWarmup(beta, int(params[0]))
        if name == "cyclical" and len(params) in (1, 2):
            period, ratio = int(params[0]), float(params[1]) if len(params) == 2 else 0.5
            if period > 0 and 0 < ratio <= 1:
                return Cyclical(beta, period, ratio)
    except ValueError:
        pass
    raise ValueError(f"bad KL annealing schedule {spec!r}; use one of {', '.join(SCHEDULES)}")
