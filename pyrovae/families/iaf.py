"""The inverse autoregressive flow guide: a diagonal Normal pushed through ``flows`` IAF steps.

The encoder network outputs, per datapoint, the base Normal's ``loc`` and raw scale
(softplus + 1e-4, like :class:`~pyrovae.families.base.Param` ``positive``) and a context
vector ``h`` of ``context`` numbers. z0 ~ N(loc, scale) is reparameterized, then each step
z <- sigma * z + (1 - sigma) * m, with (m, logit sigma) = MADE(z, h), Eq. (14) of the paper
(Pyro's ``ConditionalAffineAutoregressive(..., stable=True)``; its sigmoid bias 2 starts
sigma near 0.88, close to the identity). The steps alternate the identity and the reversed
order of z's dimensions, as the paper does, so that no seed is drawn for a permutation (Pyro's
default is a random one) and the same seed rebuilds the same guide.

log q(z) of a sample it drew is exact and cheap: each step caches its last forward, so
scoring the sample needs no inversion. Scoring any other value (a detached copy, as the
doubly reparameterized IWAE does) inverts each step, ``size`` network passes: exact but slower
(and the cost of a VampPrior over this guide, whose components score z at the pseudo-inputs).

Options: ``flows`` (2; 0 is the diagonal Normal exactly), ``context`` (0: the latent size)
and ``hidden`` (0: max(2 * size, 64); at least the latent size), the width of each of the
two hidden layers of every step's MADE.

References: D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling, "Improved
Variational Inference with Inverse Autoregressive Flow", NeurIPS 2016.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family
from pyrovae.nets import broadcast_cat, positive_scale


@register
class InverseAutoregressiveFlow(Family):
    """q(z | parents): N(loc, diag scale^2) then ``flows`` conditional affine autoregressive steps."""

    name = "iaf"
    roles = frozenset({"guide"})
    capabilities = Capabilities(reparameterized=True, has_mean=False, factorized=False)
    option_defaults: ClassVar[dict[str, float]] = {"flows": 2.0, "context": 0.0, "hidden": 0.0}  # 0: the default

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in self.option_defaults:
            value = self.option(key)
            if not (value >= 0 and float(value).is_integer()):
                raise ValueError(f"iaf: option {key} must be a whole number >= 0, got {value}")

    def sizes(self, size: int) -> tuple[int, int, int]:
        """``(flows, context, hidden)`` for a ``size``-vector, the defaults filled in."""
        flows, context, hidden = (int(self.option(k)) for k in ("flows", "context", "hidden"))
        return flows, context or size, hidden or max(2 * size, 64)

    def num_outputs(self, size: int) -> int:
        flows, context, _ = self.sizes(size)
        return 2 * size + (context if flows else 0)  # loc, raw scale and (with flows) h

    def conditional(self, net: nn.Module, in_dim: int, size: int) -> nn.Module:
        flows, context, hidden = self.sizes(size)
        if hidden < size:
            raise ValueError(f"iaf: option hidden must be at least the latent size {size}, got {hidden}")
        return IAFConditional(net, size, context, hidden, flows)


class IAFConditional(nn.Module):
    """The IAF guide around ``net`` (``(..., in_dim) -> (..., 2 * size + context)``); its steps are
    submodules, so ``pyro.module``, ``state_dict`` and ``.to(device)`` see them with the encoder."""

    def __init__(self, net: nn.Module, size: int, context: int, hidden: int, flows: int) -> None:
        super().__init__()
        self.net, self.size, self.context = net, size, context
        steps = []
        for i in range(flows):
            order = torch.arange(size) if i % 2 == 0 else torch.arange(size).flip(0)  # alternate, no RNG drawn
            with warnings.catch_warnings():  # size 1: a step is an affine map of z given h alone, still valid
                warnings.filterwarnings("ignore", message="ConditionalAutoRegressiveNN input_dim = 1")
                made = ConditionalAutoRegressiveNN(
                    size, context, [hidden, hidden], permutation=order, nonlinearity=nn.ELU()
                )
            steps.append(ConditionalAffineAutoregressive(made, stable=True))
        self.flows = nn.ModuleList(steps)

    def forward(self, *parents: torch.Tensor) -> dist.Distribution:
        out = self.net(broadcast_cat(parents))  # (..., 2 * size [+ context])
        loc, raw_scale = out[..., : self.size], out[..., self.size : 2 * self.size]  # (..., size) each
        base = dist.Normal(loc, positive_scale(raw_scale)).to_event(1)  # batch (...), event (size,)
        if not self.flows:
            return base
        h = out[..., 2 * self.size :]  # (..., context); each step broadcasts it over particle dims
        # Conditioned steps are new objects per call, so their one-sample caches belong to this distribution.
        return IAFDistribution(base, [step.condition(h) for step in self.flows])


class IAFDistribution(dist.TransformedDistribution):
    """A ``TransformedDistribution`` whose ``log_prob`` first broadcasts the value to the batch shape.

    Inverting a step builds z at the value's shape and expands h to it, so a value of fewer batch
    dims (``MixtureSameFamily`` pads one to ``(..., 1, size)`` against ``(..., K)`` components, as a
    VampPrior over this guide does) would not meet h's shape. A value of the full shape passes
    unchanged: the very tensor sampled, so that the steps' caches still serve it.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(value.shape, self.batch_shape + self.event_shape)
        return super().log_prob(value if value.shape == shape else value.expand(shape))
