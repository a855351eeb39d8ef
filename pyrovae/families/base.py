"""What a distribution family is: the networks it needs, how it builds a distribution, what it can do.

A *family* is anything a spec can name for a prior, a guide or a likelihood. It
declares its :class:`Capabilities`, and everything that used to ask "is this an
autoencoder, a mean-field guide, a binary likelihood" asks them instead:
:func:`pyrovae.families.get` finds a family by name, and the spec, the checks
of the command line and the diagnostics read what it declares.

Most families are a list of parameters (:class:`Param`) and a constructor
:meth:`Family.distribution`; as a conditional (a guide, a conditional prior, a
likelihood) the parameters come from a network's outputs, as a parentless
prior from fixed values or learned free parameters (:class:`FreePrior`).
Families that need more (a flow's own networks, a prior that reads the guide)
override :meth:`Family.conditional` or :meth:`Family.free`.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.nets import broadcast_cat, positive_scale

ROLES = ("prior", "guide", "likelihood", "label")  # label: the likelihood of an observed class label


@dataclass(frozen=True)
class Capabilities:
    """What a family's distributions can do; defaults are a reparameterized continuous density."""

    reparameterized: bool = True  # rsample: pathwise (reparameterized) gradients through its samples
    enumerable: bool = False  # a finite support that Pyro can sum over exactly (TraceEnum_ELBO)
    deterministic: bool = False  # a point mass: no density over x to bound, no KL (the autoencoders)
    has_mean: bool = True  # .mean is E[z], so active units need no sampling
    factorized: bool = True  # independent per dimension, so a KL per dimension exists
    analytic_kl: frozenset[str] = frozenset()  # prior families against which KL(q || p) is in closed form
    conditional: bool = True  # can be a conditional p(z | parents) from a network's outputs (else parentless only)
    support: str = "real"  # of its values: real | binary | unit-interval | count | class (an index)


@dataclass(frozen=True)
class Param:
    """One parameter of a family, ``(..., size)`` like its values.

    :param positive: constrained > 0: a network's raw output goes through ``softplus`` plus ``floor``.
    :param default: its value in a parentless prior whose spec gives none.
    """

    name: str
    positive: bool = False
    default: float = 0.0
    floor: float = 1e-4

    def constrain(self, raw: torch.Tensor) -> torch.Tensor:
        return positive_scale(raw, self.floor) if self.positive else raw

    def unconstrain(self, value: torch.Tensor) -> torch.Tensor:
        """The raw value that :meth:`constrain` maps to ``value`` (the start of a learned parameter)."""
        if not self.positive:
            return value
        y = value - self.floor
        return y + torch.log(-torch.expm1(-y))  # softplus^-1


@dataclass(frozen=True)
class Family:
    """A named family of distributions over ``(size,)``-vectors (event shape ``(size,)``).

    :param options: fixed settings of one use of the family (e.g. a Student-t's ``df``), from the spec.
    """

    name: ClassVar[str]
    roles: ClassVar[frozenset[str]]
    capabilities: ClassVar[Capabilities] = Capabilities()
    params: ClassVar[tuple[Param, ...]] = ()
    option_defaults: ClassVar[Mapping[str, float]] = {}  # name -> default of each option
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(self.option_defaults) or "none"
            raise ValueError(f"{self.name}: unknown options {unknown}; its options: {known}")
        for key, value in self.options.items():
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise ValueError(f"{self.name}: option {key} must be a finite number, got {value!r}")

    def option(self, key: str) -> float:
        return self.options.get(key, self.option_defaults[key])

    def num_outputs(self, size: int) -> int:
        """Network outputs a conditional of this family over a ``size``-vector needs."""
        return len(self.params) * size

    def distribution(self, **params: torch.Tensor) -> dist.Distribution:
        """The distribution with these (constrained) parameters, each ``(..., size)``; event shape ``(size,)``."""
        raise NotImplementedError

    def from_outputs(self, h: torch.Tensor) -> dist.Distribution:
        """The distribution whose raw parameters are the network outputs ``h`` ``(..., num_outputs)``."""
        raws = h.chunk(len(self.params), dim=-1)
        return self.distribution(**{p.name: p.constrain(r) for p, r in zip(self.params, raws, strict=True)})

    def conditional(self, net: nn.Module, in_dim: int, size: int) -> nn.Module:
        """The conditional ``(*parents) -> distribution`` around ``net`` (``(..., in_dim) -> num_outputs``)."""
        return Conditional(self, net)

    def free(self, size: int, values: Mapping[str, float], *, learn: bool, context: Mapping[str, Any]) -> nn.Module:
        """A parentless prior ``() -> distribution``: ``values`` of the parameters (the defaults for the rest),
        fixed or, with ``learn``, the start of free parameters. ``context`` holds what some families read
        (the guide's conditional of the same latent, the data size)."""
        return FreePrior(self, size, values, learn=learn)

    def check(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the family when data ``x`` lie outside its support."""
        support = self.capabilities.support
        ok = {
            "real": lambda: bool(torch.isfinite(x).all()),
            "binary": lambda: bool(((x == 0) | (x == 1)).all()),
            "unit-interval": lambda: bool(((x >= 0) & (x <= 1)).all()),
            "count": lambda: bool(((x >= 0) & (x == x.round())).all()),
            "class": lambda: not x.is_floating_point() and bool((x >= 0).all()),
        }[support]
        if not ok():
            raise ValueError(f"the {self.name} likelihood needs {_NEEDS[support]}")


_NEEDS = {  # what data a support holds, and what to do with data outside it
    "real": "finite data: drop or fix the rows with NaN or infinite values",
    "binary": "binary data (0/1) but got grey-scale values; binarize the data (pyrovae.data.load_dataset(..., "
    "binarize=True)) or use --likelihood continuous-bernoulli or gaussian",
    "unit-interval": "data in [0, 1]; use --likelihood gaussian",
    "count": "counts 0, 1, 2, ... but got other values; give integer data, or binarize grey-scale images "
    "(pyrovae.data.load_dataset(..., binarize=True))",
    "class": "class indices 0, 1, ... (a long tensor); give the labels as integers",
}


class Conditional(nn.Module):
    """p(value | parents) = family(net(concatenated parents)): a guide, a conditional prior or a likelihood."""

    def __init__(self, family: Family, net: nn.Module) -> None:
        super().__init__()
        self.family, self.net = family, net

    def forward(self, *parents: torch.Tensor) -> dist.Distribution:
        return self.family.from_outputs(self.net(broadcast_cat(parents)))


class FreePrior(nn.Module):
    """A parentless prior over a ``size``-vector: the family at fixed parameters (buffers) or learned ones
    (parameters, unconstrained); batch shape ``()``, so that plates broadcast it."""

    def __init__(self, family: Family, size: int, values: Mapping[str, float], *, learn: bool) -> None:
        super().__init__()
        unknown = sorted(set(values) - {p.name for p in family.params})
        if unknown:
            raise ValueError(
                f"{family.name}: unknown parameters {unknown}; its parameters: {[p.name for p in family.params]}"
            )
        self.family, self.learn = family, learn
        for p in family.params:
            value = torch.full((size,), float(values.get(p.name, p.default)))
            if p.positive and not value.min() > 0:
                raise ValueError(f"{family.name}: parameter {p.name} must be > 0, got {values.get(p.name)}")
            if learn:
                self.register_parameter(p.name, nn.Parameter(p.unconstrain(value)))
            else:
                self.register_buffer(p.name, value)

    def forward(self) -> dist.Distribution:
        values = {p.name: getattr(self, p.name) for p in self.family.params}
        if self.learn:
            values = {p.name: p.constrain(values[p.name]) for p in self.family.params}
        return self.family.distribution(**values)
