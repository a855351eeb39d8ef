"""A learned mixture-of-Gaussians prior p(z) = sum_k pi_k N(z; m_k, diag s_k^2): a multimodal prior.

K components (option ``components``, default 10) whose means, scales and weights
are all learned; the means start as N(0, spread^2 I) draws (option ``spread``,
default 1) so that the components differ, the scales at 1 and the weights uniform.
Its log-density is :class:`~pyrovae.families.vamp.NormalMixture`'s (three matrix
products); no closed-form KL against a Normal guide, so ``mf-elbo`` is refused.

References: N. Dilokthanakul et al., "Deep Unsupervised Clustering with Gaussian Mixture Variational
Autoencoders", arXiv:1611.02648, 2016; J. M. Tomczak, M. Welling, "VAE with a VampPrior", AISTATS 2018
(section 2: the mixture of Gaussians prior as a baseline).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param
from pyrovae.families.vamp import NormalMixture

SCALE = Param("scale", positive=True)  # the components' scales: softplus(raw) + 1e-4, as every scale


@register
class GaussianMixture(Family):
    """sum_k softmax(logits)_k N(loc_k, diag scale_k^2) over ``components`` learned components."""

    name = "mixture"
    roles = frozenset({"prior"})
    capabilities = Capabilities(reparameterized=False, factorized=False, conditional=False)
    option_defaults: ClassVar[dict[str, float]] = {"components": 10.0, "spread": 1.0}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.option("components") >= 1 and float(self.option("components")).is_integer()):
            raise ValueError(f"mixture: option components must be a whole number >= 1, got {self.option('components')}")
        if not self.option("spread") > 0:
            raise ValueError(f"mixture: option spread must be > 0, got {self.option('spread')}")

    def free(self, size: int, values: Mapping[str, float], *, learn: bool, context: Mapping[str, Any]) -> nn.Module:
        if values:
            raise ValueError(f"mixture: its parameters are learned, not set; got {sorted(values)}")
        return MixturePrior(int(self.option("components")), size, self.option("spread"))


class MixturePrior(nn.Module):
    """The parameters of one mixture prior: means and raw scales ``(K, size)``, weight logits ``(K,)``;
    ``forward()`` is the mixture, batch shape ``()``, event shape ``(size,)``."""

    def __init__(self, components: int, size: int, spread: float) -> None:
        super().__init__()
        self.loc = nn.Parameter(spread * torch.randn(components, size))
        self.raw_scale = nn.Parameter(SCALE.unconstrain(torch.ones(components, size)))
        self.logits = nn.Parameter(torch.zeros(components))

    def forward(self) -> dist.Distribution:
        return NormalMixture(self.loc, SCALE.constrain(self.raw_scale), self.logits)
