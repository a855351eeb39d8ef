"""Observation models p(x | h): from a decoder's output h to a distribution over x.

Every likelihood is a family of :mod:`pyrovae.families` (``bernoulli``,
``gaussian``, ``learned-gaussian``, ``continuous-bernoulli``, ``poisson``,
``negative-binomial``, ...): it maps the decoder output ``(..., k * D)`` (``k`` =
:attr:`Likelihood.params_per_pixel`) to a distribution with event shape ``(D,)``,
so models, bounds and figures treat them alike. ``mean`` of the distribution is
what figures draw.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae import families
from pyrovae.families.base import Family
from pyrovae.nets import broadcast_cat

LIKELIHOODS = families.names("likelihood")


@dataclass(frozen=True)
class Likelihood:
    """p(x | h) for a named family with its settings.

    :param name: one of :data:`LIKELIHOODS`.
    :param obs_scale: ``gaussian``: the fixed standard deviation of every pixel.
    :param min_obs_scale: ``learned-gaussian``: floor of the learned standard
        deviation; without it the density of a constant pixel (MNIST's black
        border) grows without bound as the scale shrinks.
    """

    name: str = "bernoulli"
    obs_scale: float = 0.1
    min_obs_scale: float = 0.01
    role: str = "likelihood"  # or "label": the likelihood of an observed class label

    def __post_init__(self) -> None:
        if self.obs_scale <= 0 or self.min_obs_scale <= 0:
            raise ValueError(f"obs_scale and min_obs_scale must be > 0, got {self.obs_scale}, {self.min_obs_scale}")
        families.get(self.name, self.role)  # an unknown name raises here, naming the choices

    @functools.cached_property  # built once: __call__ runs at every step
    def family(self) -> Family:
        """The family with its options (only the settings it has)."""
        cls = families.FAMILIES.get(self.name)
        settings = {"obs_scale": self.obs_scale, "min_obs_scale": self.min_obs_scale}
        options = {k: v for k, v in settings.items() if cls is not None and k in cls.option_defaults}
        return families.get(self.name, self.role, options)

    @property
    def params_per_pixel(self) -> int:
        """Decoder outputs per data dimension: 2 (mean and scale) for ``learned-gaussian``, else 1."""
        return self.family.num_outputs(1)

    @property
    def support(self) -> str:
        """What the data must be: real, binary, unit-interval or count."""
        return self.family.capabilities.support

    @property
    def binary(self) -> bool:
        """Whether the data must be binary (and grey-scale data binarized)."""
        return self.support == "binary"

    def __call__(self, h: torch.Tensor) -> dist.Distribution:
        """p(x | h): batch shape ``h.shape[:-1]``, event shape ``(D,)``."""
        return self.family.from_outputs(h)

    def check(self, x: torch.Tensor) -> None:
        """Raise a clear error when ``x`` lies outside this likelihood's support."""
        self.family.check(x)


class Observation(nn.Module):
    """The conditional p(x | parents): a decoder network followed by a :class:`Likelihood`.

    :param decoder: network mapping the concatenated parents (z, or z and a
        label) to ``(..., likelihood.params_per_pixel * D)``.
    :param likelihood: the observation family.
    """

    def __init__(self, decoder: nn.Module, likelihood: Likelihood) -> None:
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood

    def forward(self, *parents: torch.Tensor) -> dist.Distribution:
        return self.likelihood(self.decoder(broadcast_cat(parents)))
