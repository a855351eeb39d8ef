"""The Poisson likelihood for count data: x_d ~ Poisson(rate_d), rate = softplus(decoder output).

``softplus`` rather than ``exp`` keeps a large decoder output from overflowing the
rate (it grows linearly); a floor of 1e-6 keeps log p(0 | rate) finite.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (any likelihood with a density);
R. Lopez et al., "Deep generative modeling for single-cell transcriptomics", Nature Methods 2018 (count decoders).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


@register
class Poisson(Family):
    """Poisson(rate) per dimension; the data must be counts 0, 1, 2, ... (grey-scale images are binarized)."""

    name = "poisson"
    roles = frozenset({"likelihood"})
    capabilities = Capabilities(reparameterized=False, support="count")
    params = (Param("rate", positive=True, floor=1e-6),)

    def distribution(self, *, rate: torch.Tensor) -> dist.Distribution:
        return dist.Poisson(rate).to_event(1)
