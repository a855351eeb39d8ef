"""The Bernoulli family p(b | l) = prod_d sigmoid(l_d)^b_d (1 - sigmoid(l_d))^(1 - b_d) over binary vectors.

As a likelihood it is the model of binary data x; as a latent (``prior = "bernoulli"``,
``encoder.family = "bernoulli"``) it is D binary units h, a sigmoid belief net's layer.
A latent of D units has 2^D values: Pyro enumerates them (:class:`BinaryUnits`) when
D <= :data:`MAX_ENUMERATED_UNITS`; larger layers are trained by a relaxation or the
score function and importance-sampled by the bounds.

The log-density is computed by :class:`Bernoulli`, whose ``log_prob`` avoids
``log1p``: torch's CPU kernels for ``log1p``, ``softplus`` and
``binary_cross_entropy_with_logits`` are not vectorized, and on the 2-core
benchmark machine they took 2.5 ms of a 15 ms IWAE k = 5 step (a (5, 100, 784)
tensor), against 0.6 ms for the formula below (see benchmarks/results/speed.md).

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014; R. M. Neal,
"Connectionist learning of belief networks", Artificial Intelligence 56, 1992 (sigmoid belief nets);
A. Mnih, K. Gregor, "Neural Variational Inference and Learning in Belief Networks", ICML 2014.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.ops.provenance import ProvenanceTensor
from torch.distributions.utils import broadcast_all

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


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
        """x l - softplus(l) elementwise, by :class:`_BernoulliLogProb`.

        Tensors that carry Pyro's provenance (``TraceGraph_ELBO`` tracks which sampled sites a value
        depends on) take the formula in plain torch instead: an ``autograd.Function`` would unwrap them,
        and the gradient would not reach the logits.
        """
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        if isinstance(logits, ProvenanceTensor) or isinstance(value, ProvenanceTensor):
            return value * logits - torch.nn.functional.softplus(logits)
        return _BernoulliLogProb.apply(logits, value)


MAX_ENUMERATED_UNITS = 12  # 2^12 = 4096 values per datapoint: the largest binary latent enumerated


class BinaryUnits(dist.Independent):
    """``Bernoulli(logits).to_event(1)`` whose support Pyro can enumerate: the 2^D binary vectors of length D."""

    @property
    def has_enumerate_support(self) -> bool:
        return True

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """The 2^D binary vectors, ``(2^D, *batch_shape, D)`` (``(2^D, 1, ..., 1, D)`` unless ``expand``).

        :raises ValueError: when D > :data:`MAX_ENUMERATED_UNITS`.
        """
        (units,) = self.event_shape
        if units > MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"a binary latent of {units} units has 2^{units} values, too many to enumerate (at most "
                f"{MAX_ENUMERATED_UNITS} units); train it with estimator relaxed, straight-through or score"
            )
        logits = self.base_dist.logits
        bits = torch.arange(units, device=logits.device)
        codes = ((torch.arange(2**units, device=logits.device)[:, None] >> bits) & 1).to(logits.dtype)  # (2^D, D)
        values = codes.reshape((2**units,) + (1,) * len(self.batch_shape) + (units,))
        return values.expand((2**units, *self.batch_shape, units)) if expand else values


@register
class BernoulliFamily(Family):
    """Bernoulli(logits = network output) per dimension: the likelihood of binary data (grey-scale data are
    binarized for it), or binary latent units; a parentless prior's ``logits`` default to 0 (p = 1/2)."""

    name = "bernoulli"
    roles = frozenset({"prior", "guide", "likelihood"})
    capabilities = Capabilities(
        reparameterized=False,
        enumerable=True,  # as a latent of at most MAX_ENUMERATED_UNITS units
        analytic_kl=frozenset({"bernoulli"}),
        support="binary",
    )
    params = (Param("logits"),)

    def distribution(self, *, logits: torch.Tensor) -> dist.Distribution:
        return BinaryUnits(Bernoulli(logits=logits), 1)
