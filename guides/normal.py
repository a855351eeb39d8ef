"""The amortized diagonal-Normal guide q(z | x) = N(mu(x), diag sigma(x)^2).

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.graph import DiagonalNormal, Node
from pyrovae.guides.amortized import AmortizedGuide


class NormalGuide(AmortizedGuide):
    """Mean-field Gaussian posterior over the latent site ``"z"``.

    :param encoder: network mapping x ``(B, data_dim)`` to ``(loc, scale)``, each ``(B, latent_dim)``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__([Node("z", ("x",), "encoder")], {"encoder": DiagonalNormal(encoder)})

    @property
    def encoder(self) -> nn.Module:
        """The network x -> (loc, scale)."""
        return self.conditionals["encoder"].encoder

    def posterior(self, x: torch.Tensor) -> dist.Distribution:
        """q(z | x): batch shape ``(B,)``, event shape ``(latent_dim,)``."""
        return self.conditionals["encoder"](x)
