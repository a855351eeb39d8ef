"""Learning-rate schedules: the factor on the base learning rate as a pure function of the epoch.

Written as ``constant``, ``cosine`` (from the base rate down to 0 over the run's epochs, half a cosine)
or ``step:EVERY:GAMMA`` (times GAMMA after every EVERY epochs). A factor that depends on the epoch
alone needs no state of its own, so a resumed run continues its schedule from the checkpoint's
epoch (a resume with more ``--epochs`` stretches a cosine to the new end).

References: I. Loshchilov, F. Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017
(the cosine schedule, without restarts).
"""

from __future__ import annotations

import math
from collections.abc import Callable

LR_SCHEDULES = ("constant", "cosine", "step:EVERY:GAMMA")


def parse_lr_schedule(spec: str) -> Callable[[int, int], float]:
    """``(epoch, epochs) -> factor`` for ``spec``; ``epoch`` counts from 1, ``epochs`` is the run's last.

    :raises ValueError: naming the accepted forms when ``spec`` is none of them.
    """
    if spec == "constant":
        return lambda epoch, epochs: 1.0
    if spec == "cosine":
        return lambda epoch, epochs: 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
    kind, *rest = spec.split(":")
    if kind == "step" and len(rest) == 2:
        try:
            every, gamma = int(rest[0]), float(rest[1])
        except ValueError:
            every, gamma = 0, 0.0
        if every >= 1 and 0 < gamma < math.inf:
            return lambda epoch, epochs: gamma ** ((epoch - 1) // every)
    raise ValueError(
        f"unknown learning-rate schedule {spec!r}; give one of {', '.join(LR_SCHEDULES)} "
        "(EVERY a whole number of epochs >= 1, GAMMA > 0, e.g. step:10:0.5)"
    )
