"""The continuous Bernoulli likelihood for data in [0, 1], the normalized form of the Bernoulli on grey values.

References: G. Loaiza-Ganem, J. P. Cunningham, "The continuous Bernoulli: fixing a pervasive error in
variational autoencoders", NeurIPS 2019.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


@register
class ContinuousBernoulli(Family):
    """ContinuousBernoulli(logits = decoder output) per dimension."""

    name = "continuous-bernoulli"
    roles = frozenset({"likelihood"})
    capabilities = Capabilities(support="unit-interval")
    params = (Param("logits"),)

    def distribution(self, *, logits: torch.Tensor) -> dist.Distribution:
        return dist.ContinuousBernoulli(logits=logits).to_event(1)
