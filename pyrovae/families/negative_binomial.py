"""The negative binomial likelihood for overdispersed counts: x_d ~ NB(r_d, logits_d), both from the decoder.

Mean r e^l and variance mean (1 + e^l): counts whose variance exceeds their mean,
which a Poisson cannot fit. r = softplus(raw) + 1e-4 > 0.

References: R. Lopez et al., "Deep generative modeling for single-cell transcriptomics", Nature Methods 2018.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


@register
class NegativeBinomial(Family):
    """NegativeBinomial(total_count, logits) per dimension; the data must be counts 0, 1, 2, ..."""

    name = "negative-binomial"
    roles = frozenset({"likelihood"})
    capabilities = Capabilities(reparameterized=False, support="count")
    params = (Param("total_count", positive=True), Param("logits"))

    def distribution(self, *, total_count: torch.Tensor, logits: torch.Tensor) -> dist.Distribution:
        return dist.NegativeBinomial(total_count=total_count, logits=logits).to_event(1)
