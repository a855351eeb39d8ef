"""The Laplace distribution per dimension, p(z_u) = exp(-|z_u - loc| / scale) / (2 scale): a sparser prior.

A heavier-tailed, peaked alternative to the standard Normal prior; KL(q || p) has
no closed form against a Normal guide, so the objectives sample it (``mf-elbo`` is refused).

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (any prior with a density).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


@register
class Laplace(Family):
    """Laplace(loc, scale) independently per dimension."""

    name = "laplace"
    roles = frozenset({"prior", "guide"})
    capabilities = Capabilities(analytic_kl=frozenset({"laplace"}))
    params = (Param("loc"), Param("scale", positive=True, default=1.0))

    def distribution(self, *, loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
        return dist.Laplace(loc, scale).to_event(1)
