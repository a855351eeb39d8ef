"""The VampPrior p(z) = (1/K) sum_k q(z | u_k): the guide's mixture at K learned pseudo-inputs.

A parentless prior that reads the guide: ``free`` gets the guide's conditional for the
same latent as ``context["guide"]`` (``x -> distribution``, event shape ``(size,)``), the
data size as ``context["data_dim"]`` and, optionally, ``context["pseudo_init"]``, a
``(K, D)`` tensor (e.g. K training images) to start the pseudo-inputs from. Without it they
start as the paper's N(0.05, 0.01^2) per pixel, near the dark background of MNIST-like
data in [0, 1]; a data set of other ranges should pass ``pseudo_init``. The pseudo-inputs
go through the encoder as they are (the paper clips them to [0, 1] with a hardtanh;
pyrovae does not, so that real-valued data work as well).

q(z | u) is recomputed at every call, so the prior's log-density trains the pseudo-inputs
and, as in the paper, the encoder too. The pseudo-inputs are always learned: ``learn``
is accepted either way and ignored; the prior has no loc or scale to set.

Option ``components`` (K, default 500). Sampling (for generation) is ancestral, a
component then a draw of it, with no reparameterization; the mean is the mean of the
components' means (it needs a guide whose distribution has a mean).

References: J. M. Tomczak, M. Welling, "VAE with a VampPrior", AISTATS 2018.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Independent, Normal, constraints

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family

INIT_MEAN, INIT_STD = 0.05, 0.01  # the paper's start of the pseudo-inputs without pseudo_init


@register
class VampPrior(Family):
    """(1/K) sum_k q(z | u_k) over K learned pseudo-inputs u_k of the data's size."""

    name = "vamp"
    roles = frozenset({"prior"})
    capabilities = Capabilities(reparameterized=False, has_mean=True, factorized=False, conditional=False)
    option_defaults: ClassVar[dict[str, float]] = {"components": 500.0}

    def __post_init__(self) -> None:
        super().__post_init__()
        k = self.option("components")
        if not (k >= 1 and float(k).is_integer()):
            raise ValueError(f"vamp: option components must be a whole number >= 1, got {k}")

    def free(self, size: int, values: Mapping[str, float], *, learn: bool, context: Mapping[str, Any]) -> nn.Module:
        if values:
            raise ValueError(f"vamp: the prior has no parameters to set, got {sorted(values)}; it learns pseudo-inputs")
        if context.get("guide") is None:
            raise ValueError("vamp: the prior needs the guide's conditional of the same latent (context['guide'])")
        k, init = int(self.option("components")), context.get("pseudo_init")
        if init is None:
            if context.get("data_dim") is None:
                raise ValueError("vamp: the prior needs the data size (context['data_dim'])")
            init = INIT_MEAN + INIT_STD * torch.randn(k, int(context["data_dim"]))  # (K, D)
        init = torch.as_tensor(init, dtype=torch.get_default_dtype()).detach().clone()
        d = context.get("data_dim")
        d = int(d) if d is not None else (init.shape[-1] if init.dim() == 2 else -1)
        if init.shape != (k, d):
            raise ValueError(f"vamp: pseudo_init must be {k} x {d} (components x data size), got {tuple(init.shape)}")
        return VampMixture(context["guide"], init, size)


class VampMixture(nn.Module):
    """The VampPrior of one latent: pseudo-inputs ``(K, D)``, a parameter; ``forward()`` is the mixture,
    batch shape ``()`` (plates broadcast it), event shape ``(size,)``."""

    pseudo_inputs: nn.Parameter

    def __init__(self, guide: nn.Module, pseudo_inputs: torch.Tensor, size: int) -> None:
        super().__init__()
        # Not a submodule: the guide's parameters belong to the guide. As a submodule they would also be
        # registered by pyro.module of the model under a second name (one tensor, two param-store entries
        # stepped twice), saved twice in the state_dict, and moved by the prior's .to(). So the reference
        # bypasses nn.Module.__setattr__; the guide is moved, saved and registered as the guide.
        object.__setattr__(self, "_guide", guide)
        self.pseudo_inputs = nn.Parameter(pseudo_inputs)  # (K, D)
        self.size = size

    def forward(self) -> dist.Distribution:
        k = self.pseudo_inputs.shape[0]
        q = self._guide(self.pseudo_inputs)  # q(z | u_k): batch (K,), event (size,); grads to u and the encoder
        if q.batch_shape != (k,) or q.event_shape != (self.size,):
            raise ValueError(
                f"vamp: the guide maps the pseudo-inputs to batch {tuple(q.batch_shape)}, event {tuple(q.event_shape)}"
                f"; the VampPrior needs ({k},) and ({self.size},): a guide that reads x alone"
            )
        uniform = dist.Categorical(logits=self.pseudo_inputs.new_zeros(k))  # weights 1/K
        if isinstance(q, Independent) and isinstance(q.base_dist, Normal) and q.reinterpreted_batch_ndims == 1:
            return NormalMixture(q.base_dist.loc, q.base_dist.scale)
        return dist.MixtureSameFamily(uniform, q)  # log p(z) = logsumexp_k log q(z | u_k) - log K

    def extra_repr(self) -> str:
        k, d = self.pseudo_inputs.shape
        return f"components={k}, data_dim={d}, size={self.size}, guide={type(self._guide).__name__} (not a submodule)"


class NormalMixture(dist.TorchDistribution):
    """The mixture of K diagonal Normals N(loc_k, diag scale_k^2), ``loc`` and ``scale`` ``(K, D)``, with
    weights softmax(``logits``) ``(K,)`` (uniform when ``None``).

    Its ``log_prob`` takes three matrix products instead of the ``(..., K, D)`` tensor of elementwise
    densities that ``MixtureSameFamily`` builds: for the VampPrior's L_5000 (5000 particles x a batch x
    K = 500 x D = 50) that tensor is the whole cost. With a = 1 / s^2,

        log N(z; m_k, s_k) = -0.5 [z^2 . a_k - 2 z . (m_k a_k) + m_k^2 . a_k] - sum_d log s_kd - D/2 log 2 pi.

    ``expand`` (Pyro's plates) records the batch shape without copying the components.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        logits: torch.Tensor | None = None,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        self.loc, self.scale = loc, scale  # (K, D) each
        self.logits = loc.new_zeros(loc.shape[0]) if logits is None else logits  # (K,)
        super().__init__(torch.Size(batch_shape), loc.shape[-1:], validate_args=False)

    @property
    def log_weights(self) -> torch.Tensor:
        return self.logits.log_softmax(-1)  # (K,)

    def expand(self, batch_shape: torch.Size, _instance: object = None) -> NormalMixture:
        return NormalMixture(self.loc, self.scale, self.logits, torch.Size(batch_shape))

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        k = dist.Categorical(logits=self.logits).sample(shape)  # a component per draw
        return self.loc[k] + self.scale[k] * torch.randn(*shape, self.loc.shape[-1], device=self.loc.device)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        precision = self.scale.pow(-2)  # (K, D)
        z = value.reshape(-1, value.shape[-1])  # (N, D)
        d = self.loc.shape[-1]
        const = (self.loc.pow(2) * precision).sum(-1) + 2 * self.scale.log().sum(-1) + d * math.log(2 * math.pi)
        quadratic = z.pow(2) @ precision.T - 2 * z @ (self.loc * precision).T + const  # (N, K)
        log_p = torch.logsumexp(-0.5 * quadratic + self.log_weights, dim=-1)
        return log_p.reshape(value.shape[:-1]).expand(torch.broadcast_shapes(value.shape[:-1], self.batch_shape))

    @property
    def mean(self) -> torch.Tensor:
        w = self.log_weights.exp()[:, None]  # (K, 1)
        return (w * self.loc).sum(0).expand(*self.batch_shape, -1)

    @property
    def variance(self) -> torch.Tensor:
        w = self.log_weights.exp()[:, None]
        second = (w * (self.scale.pow(2) + self.loc.pow(2))).sum(0)
        return (second - (w * self.loc).sum(0).pow(2)).expand(*self.batch_shape, -1)
