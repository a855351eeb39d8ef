"""Point-mass guides for the autoencoder baselines: q(z | x) = delta(z - f(x~)).

An autoencoder is written here as a Pyro model/guide pair rather than a plain
loss: the model is the VAE's (so ``pyrovae sample`` decodes prior draws through
the same decoder), every latent site is masked out of the objective in model and
guide, and the guide is a ``Delta`` at the encoder's output. Every objective
(``elbo``, ``mf-elbo``, IWAE) then reduces exactly to the reconstruction
log-likelihood log p(x | z = f(x~)), the autoencoder's loss, with the trainer,
checkpoints and figures unchanged. x~ is x for a plain autoencoder and a
corrupted copy for a denoising one.

References: P. Vincent, H. Larochelle, Y. Bengio, P.-A. Manzagol, "Extracting and Composing Robust
Features with Denoising Autoencoders", ICML 2008.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.nets import broadcast_cat

CORRUPTIONS = ("none", "mask:P", "gaussian:SIGMA")


class Corruption(nn.Module):
    """x -> x~ while training: ``mask:P`` zeroes each input dimension with probability P,
    ``gaussian:SIGMA`` adds N(0, SIGMA^2) noise; ``none`` (and ``eval()`` mode) is the identity.

    :param spec: ``none``, ``mask:P`` (0 <= P < 1) or ``gaussian:SIGMA`` (SIGMA >= 0).
    """

    def __init__(self, spec: str = "none") -> None:
        super().__init__()
        if not isinstance(spec, str):
            raise ValueError(f"bad corruption {spec!r}; use one of {', '.join(CORRUPTIONS)} (a string)")
        kind, _, value = spec.partition(":")
        try:
            level = float(value) if value else None
        except ValueError:
            level = None
        valid = (kind == "none" and not value) or (
            level is not None
            and ((kind == "mask" and 0 <= level < 1) or (kind == "gaussian" and 0 <= level < math.inf))
        )
        if not valid:
            raise ValueError(f"bad corruption {spec!r}; use one of {', '.join(CORRUPTIONS)}")
        self.spec, self.kind, self.level = spec, kind, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.kind == "none":
            return x
        if self.kind == "mask":
            return x * (torch.rand_like(x) >= self.level)
        return x + self.level * torch.randn_like(x)


class PointMass(nn.Module):
    """The conditional delta(z - f(x~, other parents)), x~ = corruption(first parent).

    :param net: network mapping the concatenated parents ``(..., in_dim)`` to z ``(..., D)``.
    :param corruption: applied to the first parent (x, for an encoder) before the network.
    """

    def __init__(self, net: nn.Module, corruption: Corruption | None = None) -> None:
        super().__init__()
        self.net = net
        self.corruption = corruption or Corruption()

    def forward(self, x: torch.Tensor, *parents: torch.Tensor) -> dist.Distribution:
        return dist.Delta(self.net(broadcast_cat([self.corruption(x), *parents])), event_dim=1)
