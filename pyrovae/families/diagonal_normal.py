"""The diagonal Normal N(loc, diag scale^2): the standard prior, the VAE's guide, a conditional prior.

As a guide or a conditional prior it is the :class:`~pyrovae.graph.DiagonalNormal`
around a :class:`~pyrovae.nets.GaussianEncoder` (so parameter names stay those of
earlier runs); as a parentless prior it is N(0, I) (:class:`~pyrovae.graph.StandardNormal`),
N(loc, scale) at other fixed values, or with ``learn = true`` a Normal whose mean
and scale are free parameters.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, FreePrior, Param
from pyrovae.graph import DiagonalNormal, StandardNormal
from pyrovae.nets import GaussianEncoder


@register
class Normal(Family):
    """N(loc, diag scale^2); ``diag`` is its name as a guide (``guide = "diag"``)."""

    name = "normal"
    roles = frozenset({"prior", "guide"})
    capabilities = Capabilities(analytic_kl=frozenset({"normal"}))
    params = (Param("loc"), Param("scale", positive=True, default=1.0))

    def distribution(self, *, loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
        return dist.Normal(loc, scale).to_event(1)

    def conditional(self, net: nn.Module, in_dim: int, size: int) -> nn.Module:
        return DiagonalNormal(GaussianEncoder(in_dim, size, net=net))

    def free(self, size: int, values: Mapping[str, float], *, learn: bool, context: Mapping[str, Any]) -> nn.Module:
        if not learn and all(values.get(p.name, p.default) == p.default for p in self.params):
            return StandardNormal(size)
        return FreePrior(self, size, values, learn=learn)
