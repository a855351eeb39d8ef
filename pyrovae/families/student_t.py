"""Student's t per dimension with ``df`` degrees of freedom: a heavy-tailed prior (``df = 1``: Cauchy).

``df`` is a fixed option of the site (default 3); ``loc`` and ``scale`` are fixed
or learned like any prior's parameters. No closed-form KL against a Normal guide.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (any prior with a density).
"""

from __future__ import annotations

from typing import ClassVar

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


@register
class StudentT(Family):
    """StudentT(df, loc, scale) independently per dimension; the mean exists for df > 1."""

    name = "student-t"
    roles = frozenset({"prior", "guide"})
    capabilities = Capabilities()
    params = (Param("loc"), Param("scale", positive=True, default=1.0))
    option_defaults: ClassVar[dict[str, float]] = {"df": 3.0}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.option("df") > 0:
            raise ValueError(f"student-t: option df must be > 0, got {self.option('df')}")

    def distribution(self, *, loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
        return dist.StudentT(
            torch.as_tensor(self.option("df"), dtype=loc.dtype, device=loc.device), loc, scale
        ).to_event(1)
