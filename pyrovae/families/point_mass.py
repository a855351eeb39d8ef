"""The point mass z = f(x~): the guide of the autoencoder baselines (see :mod:`pyrovae.guides.delta`).

Deterministic: a spec whose guide is a point mass is an autoencoder, whose latent
sites are masked out of the objective; it has no density over x to bound. The
option ``corruption`` (``none``, ``mask:P``, ``gaussian:SIGMA``) corrupts x before
the encoder for a denoising autoencoder.

References: P. Vincent, H. Larochelle, Y. Bengio, P.-A. Manzagol, "Extracting and Composing Robust
Features with Denoising Autoencoders", ICML 2008.
"""

from __future__ import annotations

from torch import nn

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family
from pyrovae.guides.delta import Corruption, PointMass


@register
class Delta(Family):
    """delta(z - f(parents)), the first parent (x) corrupted first."""

    name = "delta"
    roles = frozenset({"guide"})
    capabilities = Capabilities(deterministic=True, factorized=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - {"corruption"})
        if unknown:
            raise ValueError(f"delta: unknown options {unknown}; its option: corruption")
        Corruption(self.options.get("corruption", "none"))  # a ValueError names a bad one

    def num_outputs(self, size: int) -> int:
        return size

    def conditional(self, net: nn.Module, in_dim: int, size: int) -> nn.Module:
        return PointMass(net, Corruption(self.options.get("corruption", "none")))
