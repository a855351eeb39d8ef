"""The amortized diagonal-Normal guide q(z | x) = N(mu(x), diag sigma(x)^2).

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.primitives import data_plate, kl_scale


class NormalGuide(nn.Module):
    """Mean-field Gaussian posterior over the latent site ``"z"``.

    :param encoder: network mapping x ``(B, data_dim)`` to ``(loc, scale)``, each ``(B, latent_dim)``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def posterior(self, x: torch.Tensor) -> dist.Distribution:
        """q(z | x): batch shape ``(B,)``, event shape ``(latent_dim,)``."""
        loc, scale = self.encoder(x)
        return dist.Normal(loc, scale).to_event(1)

    def forward(
        self,
        x: torch.Tensor,
        *,
        beta: float = 1.0,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """The Pyro guide; takes the model's arguments (``batch_size`` is unused)."""
        pyro.module("encoder", self.encoder)
        with data_plate(x.shape[0], num_data, x.device), kl_scale(beta):
            return pyro.sample("z", self.posterior(x))
