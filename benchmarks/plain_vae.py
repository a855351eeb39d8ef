"""A plain PyTorch VAE, written without Pyro, as the reference for pyrovae's numbers.

Same architecture as ``pyrovae train`` (MLP encoder to a diagonal Normal with a
softplus scale, MLP decoder to Bernoulli logits), same optimiser and data
order conventions; the test ELBO is the one-sample Monte-Carlo ELBO per datapoint,
as pyrovae reports it.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.nets import Decoder, GaussianEncoder


class PlainVAE(nn.Module):
    def __init__(self, data_dim: int, latent_dim: int, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__()
        self.encoder = GaussianEncoder(data_dim, latent_dim, hidden, activation)
        self.decoder = Decoder(latent_dim, data_dim, tuple(reversed(hidden)), activation)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO per datapoint, analytic-free (log p(x|z) + log p(z) - log q(z|x))."""
        loc, scale = self.encoder(x)
        z = loc + scale * torch.randn_like(loc)
        log_px_z = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
        log_qz = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_px_z + log_pz - log_qz


def train_plain(
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    latent_dim: int,
    hidden: tuple[int, ...],
    activation: str = "relu",
    seed: int = 0,
) -> list[dict[str, float]]:
    """Train with Adam; return per-epoch ``heldout_elbo`` (the ELBO of the rows of ``test``) and ``seconds``
    (training steps only)."""
    torch.manual_seed(seed)
    vae = PlainVAE(train.shape[1], latent_dim, hidden, activation)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        for index in torch.randperm(train.shape[0]).split(batch_size):
            loss = -vae.elbo(train[index]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            heldout_elbo = torch.cat([vae.elbo(x) for x in test.split(1000)]).mean().item()
        history.append({"epoch": epoch, "heldout_elbo": heldout_elbo, "seconds": seconds})
    return history
