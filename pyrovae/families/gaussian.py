"""Normal likelihoods for real-valued data: a fixed standard deviation, or one the decoder outputs.

``gaussian`` has every dimension's standard deviation fixed at ``obs_scale``;
``learned-gaussian`` takes a mean and a raw scale per dimension from the decoder,
the scale floored at ``min_obs_scale``: without a floor the density of a constant
dimension (MNIST's black border) grows without bound as its scale shrinks.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (Gaussian decoders).
"""

from __future__ import annotations

from typing import ClassVar

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param
from pyrovae.nets import positive_scale


@register
class Gaussian(Family):
    """N(decoder output, obs_scale^2) per dimension."""

    name = "gaussian"
    roles = frozenset({"likelihood"})
    capabilities = Capabilities()
    params = (Param("loc"),)
    option_defaults: ClassVar[dict[str, float]] = {"obs_scale": 0.1}

    def distribution(self, *, loc: torch.Tensor) -> dist.Distribution:
        return dist.Normal(loc, self.option("obs_scale")).to_event(1)


@register
class LearnedGaussian(Family):
    """N(mu, sigma^2) per dimension, mu and sigma = softplus(raw) + min_obs_scale from the decoder."""

    name = "learned-gaussian"
    roles = frozenset({"likelihood"})
    capabilities = Capabilities()
    params = (Param("loc"), Param("scale", positive=True))
    option_defaults: ClassVar[dict[str, float]] = {"min_obs_scale": 0.01}

    def distribution(self, *, loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
        return dist.Normal(loc, scale).to_event(1)

    def from_outputs(self, h: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = h.chunk(2, dim=-1)  # (..., D) each
        return self.distribution(loc=loc, scale=positive_scale(raw_scale, self.option("min_obs_scale")))
