"""The variational autoencoder's generative model (Kingma & Welling, 2014).

    z ~ Normal(0, I)                 (latent_dim,)
    x | z ~ p(x | f(z))              (data_dim,), Bernoulli(logits=f(z)) by default

A plain Pyro model: an ``nn.Module`` whose ``forward`` is the model function, so
``pyro.infer.Predictive``, ``poutine.trace`` and a user's own ``SVI`` use it
as they would any Pyro model. It is the one-latent :class:`~pyrovae.models.latent.LatentModel`.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.graph import Node, StandardNormal
from pyrovae.models.latent import LatentModel
from pyrovae.models.likelihoods import Likelihood, Observation


class VAE(LatentModel):
    """p(z) p(x | z) with a standard Normal prior.

    :param decoder: network mapping z ``(..., latent_dim)`` to the likelihood's
        parameters ``(..., data_dim)`` (logits for Bernoulli).
    :param latent_dim: size of z.
    :param likelihood: the observation family (Bernoulli unless given).
    """

    def __init__(self, decoder: nn.Module, latent_dim: int, likelihood: Likelihood | None = None) -> None:
        super().__init__(
            [Node("z", (), "prior")],
            Node("x", ("z",), "decoder"),
            {"prior": StandardNormal(latent_dim), "decoder": Observation(decoder, likelihood or Likelihood())},
        )
        self.latent_dim = latent_dim

    @property
    def decoder(self) -> nn.Module:
        """The network f of p(x | f(z))."""
        return self.conditionals["decoder"].decoder

    @property
    def prior_loc(self) -> torch.Tensor:
        """The prior's mean ``(latent_dim,)`` (a buffer: editing it in place changes the prior)."""
        return self.conditionals["prior"].loc

    @property
    def prior_scale(self) -> torch.Tensor:
        """The prior's standard deviations ``(latent_dim,)`` (a buffer, as :attr:`prior_loc`)."""
        return self.conditionals["prior"].scale

    def prior(self, batch_size: int) -> dist.Distribution:
        """p(z): batch shape ``(batch_size,)``, event shape ``(latent_dim,)``."""
        return self.conditionals["prior"]().expand([batch_size])

    def likelihood(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z): batch shape ``z.shape[:-1]``, event shape ``(data_dim,)``."""
        return self.conditionals["decoder"](z)
