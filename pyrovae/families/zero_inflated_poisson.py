"""The zero-inflated Poisson likelihood for sparse counts: x_d = 0 with probability g_d, else x_d ~ Poisson(rate_d).

p(0) = g + (1 - g) e^-rate and p(k) = (1 - g) rate^k e^-rate / k! for k > 0: counts
with more zeros than a Poisson of their mean allows (dropouts in single-cell data).
Both the rate (softplus, floor 1e-6) and the gate's logit come from the decoder.

References: D. Lambert, "Zero-Inflated Poisson Regression", Technometrics 1992;
R. Lopez et al., "Deep generative modeling for single-cell transcriptomics", Nature Methods 2018.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


@register
class ZeroInflatedPoisson(Family):
    """ZeroInflatedPoisson(rate, gate = sigmoid(gate_logits)) per dimension; the data must be counts 0, 1, 2, ..."""

    name = "zero-inflated-poisson"
    roles = frozenset({"likelihood"})
    capabilities = Capabilities(reparameterized=False, support="count")
    params = (Param("rate", positive=True, floor=1e-6), Param("gate_logits"))

    def distribution(self, *, rate: torch.Tensor, gate_logits: torch.Tensor) -> dist.Distribution:
        return dist.ZeroInflatedPoisson(rate, gate_logits=gate_logits).to_event(1)
