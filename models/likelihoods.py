"""Observation models p(x | h): from a decoder's output h to a distribution over x.

Every likelihood maps the decoder output ``(..., k * D)`` (``k`` =
:attr:`Likelihood.params_per_pixel`) to a distribution with event shape ``(D,)``,
so models, bounds and figures treat them alike. ``mean`` of the distribution is
what figures draw.

The Bernoulli log-density is computed by :class:`Bernoulli`, whose ``log_prob`` avoids
``log1p``: torch's CPU kernels for ``log1p``, ``softplus`` and
``binary_cross_entropy_with_logits`` are not vectorized, and on the 2-core
benchmark machine they took 2.5 ms of a 15 ms IWAE k = 5 step (a (5, 100, 784)
tensor), against 0.6 ms for the formula below (see benchmarks/results/speed.md).

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (Bernoulli and
Gaussian decoders); G. Loaiza-Ganem, J. P. Cunningham, "The continuous Bernoulli: fixing a pervasive
error in variational autoencoders", NeurIPS 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions.utils import broadcast_all

from pyrovae.nets import broadcast_cat, positive_scale

LIKELIHOODS = ("bernoulli", "gaussian", "learned-gaussian", "continuous-bernoulli")


class _BernoulliLogProb(torch.autograd.Function):
    """log p(x | l) = x l - softplus(l) elementwise, with d/dl = x - sigmoid(l) and d/dx = l.

    As x l - softplus(l) = (x l - max(l, 0)) - log(1 + u), u = exp(-|l|) in (0, 1]: the
    bracket is exact for x in {0, 1}, and log(1 + u) in place of log1p(u) adds at most
    one rounding of 1 + u (an absolute error below the dtype's eps), with only
    vectorized kernels.
    """

    @staticmethod
    def forward(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        log_one_plus_u = torch.exp(-logits.abs()).add_(1).log_()
        return torch.addcmul(logits.clamp(max=0).sub_(logits), value, logits).sub_(log_one_plus_u)

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        logits, value = ctx.saved_tensors
        grad_logits = grad * (value - torch.sigmoid(logits)) if ctx.needs_input_grad[0] else None
        grad_value = grad * logits if ctx.needs_input_grad[1] else None
        return grad_logits, grad_value


class Bernoulli(dist.Bernoulli):
    """Pyro's ``Bernoulli`` with a faster ``log_prob`` (the same values and gradients)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """x l - softplus(l) elementwise, by :class:`_BernoulliLogProb`."""
        if self._validate_args:
            self._validate_sample(value)
        return _BernoulliLogProb.apply(*broadcast_all(self.logits, value))


@dataclass(frozen=True)
class Likelihood:
    """p(x | h) for a named family.

    :param name: one of :data:`LIKELIHOODS`.
    :param obs_scale: ``gaussian``: the fixed standard deviation of every pixel.
    :param min_obs_scale: ``learned-gaussian``: floor of the learned standard
        deviation; without it the density of a constant pixel (MNIST's black
        border) grows without bound as the scale shrinks.
    """

    name: str = "bernoulli"
    obs_scale: float = 0.1
    min_obs_scale: float = 0.01

    def __post_init__(self) -> None:
        if self.name not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.name!r}; choose from {', '.join(LIKELIHOODS)}")
        if self.obs_scale <= 0 or self.min_obs_scale <= 0:
            raise ValueError(f"obs_scale and min_obs_scale must be > 0, got {self.obs_scale}, {self.min_obs_scale}")

    @property
    def params_per_pixel(self) -> int:
        """Decoder outputs per data dimension: 2 (mean and scale) for ``learned-gaussian``, else 1."""
        return 2 if self.name == "learned-gaussian" else 1

    @property
    def binary(self) -> bool:
        """Whether the data must be binary (and grey-scale data binarized)."""
        return self.name == "bernoulli"

    def __call__(self, h: torch.Tensor) -> dist.Distribution:
        """p(x | h): batch shape ``h.shape[:-1]``, event shape ``(D,)``."""
        if self.name == "bernoulli":
            return Bernoulli(logits=h).to_event(1)
        if self.name == "continuous-bernoulli":
            return dist.ContinuousBernoulli(logits=h).to_event(1)
        if self.name == "gaussian":
            return dist.Normal(h, self.obs_scale).to_event(1)
        loc, raw_scale = h.chunk(2, dim=-1)  # (..., D) each
        return dist.Normal(loc, positive_scale(raw_scale, self.min_obs_scale)).to_event(1)

    def check(self, x: torch.Tensor) -> None:
        """Raise a clear error when ``x`` lies outside this likelihood's support."""
        if self.binary and not torch.all((x == 0) | (x == 1)):
            raise ValueError(
                "the bernoulli likelihood needs binary data (0/1) but got grey-scale values; binarize the data "
                "(pyrovae.data.load_dataset(..., binarize=True)) or use --likelihood continuous-bernoulli or gaussian"
            )
        if self.name == "continuous-bernoulli" and not torch.all((x >= 0) & (x <= 1)):
            raise ValueError("the continuous-bernoulli likelihood needs data in [0, 1]; use --likelihood gaussian")


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
