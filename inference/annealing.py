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
    """Turn ``spec`` (see :data:`SCHEDULES`) into a schedule ending at ``beta``.

    :raises ValueError: naming the part of ``spec`` that is wrong, ``spec`` first.
    """
    try:
        return _parse(spec, beta)
    except ValueError as e:
        raise ValueError(f"{e} (schedules: {', '.join(SCHEDULES)})") from None


def _parse(spec: str, beta: float) -> Callable[[int], float]:
    name, *params = spec.split(":")
    if name == "constant" and not params:
        return Constant(beta)
    if name == "linear" and len(params) == 1:
        if not (params[0].isdigit() and int(params[0]) > 0):
            raise ValueError(f"{spec}: STEPS must be a positive integer (steps to warm beta up), e.g. linear:10000")
        return LinearWarmup(beta, int(params[0]))
    if name == "cyclical" and len(params) in (1, 2):
        if not (params[0].isdigit() and int(params[0]) > 0):
            raise ValueError(f"{spec}: PERIOD must be a positive integer (steps per cycle), e.g. cyclical:10000")
        ratio = _number(params[1]) if len(params) == 2 else 0.5
        if not 0 < ratio <= 1:
            raise ValueError(
                f"{spec}: RATIO must be a number in (0, 1], the fraction of each cycle spent rising from 0 to beta, "
                f"e.g. cyclical:{params[0]}:0.5"
            )
        return Cyclical(beta, int(params[0]), ratio)
    raise ValueError(f"{spec}: not a KL annealing schedule")


def _number(text: str) -> float:
    """``text`` as a float; NaN (outside every range) when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return float("nan")
