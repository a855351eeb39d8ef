"""The variational autoencoder's generative model (Kingma & Welling, 2014).

    z ~ Normal(0, I)                 (latent_dim,)
    x | z ~ Bernoulli(logits=f(z))   (data_dim,)

A plain Pyro model: an ``nn.Module`` whose ``forward`` is the model function, so
``pyro.infer.Predictive``, ``poutine.trace`` and a user's own ``SVI`` use it
as they would any Pyro model.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.primitives import data_plate, kl_scale


class VAE(nn.Module):
    """p(z) p(x | z) with a standard Normal prior and a Bernoulli decoder.

    :param decoder: network mapping z ``(..., latent_dim)`` to logits ``(..., data_dim)``.
    :param latent_dim: size of z.
    """

    def __init__(self, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.latent_dim = latent_dim
        # Buffers, so that the prior follows ``.to(device)`` with the networks.
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))

    def prior(self, batch_size: int) -> dist.Distribution:
        """p(z): batch shape ``(batch_size,)``, event shape ``(latent_dim,)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).expand([batch_size, self.latent_dim]).to_event(1)

    def likelihood(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z): batch shape ``z.shape[:-1]``, event shape ``(data_dim,)``."""
        return dist.Bernoulli(logits=self.decoder(z)).to_event(1)

    def forward(
        self,
        x: torch.Tensor | None = None,
        *,
        beta: float = 1.0,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """The Pyro model.

        :param x: observed minibatch ``(B, data_dim)``, or ``None`` to generate.
        :param beta: weight of the KL term (beta-VAE); the latent site is scaled by it.
        :param num_data: full data-set size N; the data plate then scales by N / B.
        :param batch_size: how many datapoints to generate when ``x`` is ``None``.
        :returns: the value of ``x`` (observed, or sampled when generating).
        """
        pyro.module("decoder", self.decoder)
        if x is None and batch_size is None:
            raise ValueError("give either x or batch_size")
        size = x.shape[0] if x is not None else batch_size
        with data_plate(size, num_data, self.prior_loc.device):
            with kl_scale(beta):
                z = pyro.sample("z", self.prior(size))
            return pyro.sample("x", self.likelihood(z), obs=x)
