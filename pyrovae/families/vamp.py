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

from collections.abc import Mapping
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family

INIT_MEAN, INIT_STD = 0.05, 0.01  # the paper's start of the pseudo-inputs without pseudo_init


@register
class VampPrior(Family):
    """(1/K) sum_k q(z | u_k) over K learned pseudo-inputs u_k of the data's size."""

    name = "vamp"
    roles = frozenset({"prior"})
    capabilities = Capabilities(reparameterized=False, has_mean=True, factorized=False)
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
        return dist.MixtureSameFamily(uniform, q)  # log p(z) = logsumexp_k log q(z | u_k) - log K

    def extra_repr(self) -> str:
        k, d = self.pseudo_inputs.shape
        return f"components={k}, data_dim={d}, size={self.size}, guide={type(self._guide).__name__} (not a submodule)"
