"""Training objectives by name, each a ``pyro.infer.ELBO`` usable with ``SVI``, and auxiliary loss terms.

An objective is any object with ``differentiable_loss(model, guide, *args, **kwargs)``
(every ``pyro.infer.ELBO``: Pyro's ``Trace_ELBO``, ``TraceEnum_ELBO``, ... and
pyrovae's); its options (particles, gradient estimator, order) live with it. A name
in :data:`OBJECTIVES` builds pyrovae's own (:func:`make_objective`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer import ELBO

from pyrovae.inference.iwae import IWAE
from pyrovae.inference.renyi import RenyiBound
from pyrovae.inference.trace_elbo import TraceELBO, TraceMeanFieldELBO

OBJECTIVES = ("elbo", "mf-elbo", "iwae", "renyi")


def make_objective(
    name: str,
    *,
    num_particles: int = 1,
    max_plate_nesting: int = 1,
    iwae_gradient: str = "standard",
    alpha: float = 0.5,
) -> ELBO:
    """Build the objective ``name`` with vectorized particles.

    :param name: ``"elbo"`` (:class:`~pyrovae.inference.trace_elbo.TraceELBO`, Pyro's
        ``Trace_ELBO``: Monte-Carlo KL), ``"mf-elbo"`` (:class:`~pyrovae.inference.trace_elbo.TraceMeanFieldELBO`,
        Pyro's ``TraceMeanField_ELBO``: analytic KL where Pyro knows it), ``"iwae"``
        (:class:`~pyrovae.inference.iwae.IWAE`, L_k with k = ``num_particles``) or
        ``"renyi"`` (:class:`~pyrovae.inference.renyi.RenyiBound` of order ``alpha``).
    :param num_particles: samples of z per datapoint, drawn in one vectorized pass.
    :param max_plate_nesting: plates in the model (pyrovae models have one, the data plate).
    :param iwae_gradient: ``"standard"`` or ``"dreg"``, for ``"iwae"``.
    :param alpha: the Renyi order, for ``"renyi"``.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    options = dict(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=max_plate_nesting,
    )
    if name == "elbo":
        return TraceELBO(**options)
    if name == "mf-elbo":
        return TraceMeanFieldELBO(**options)
    if name == "iwae":
        return IWAE(num_particles, gradient=iwae_gradient, max_plate_nesting=max_plate_nesting)
    if name == "renyi":
        return RenyiBound(alpha, num_particles=num_particles, max_plate_nesting=max_plate_nesting)
    raise ValueError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")


def as_objective(
    objective: Any, *, num_particles: int = 1, iwae_gradient: str = "standard", alpha: float = 0.5
) -> ELBO:
    """``objective`` itself when it has ``differentiable_loss``, else the objective it names, built with these options.

    :param objective: an ELBO-like object (``pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)``, ...)
        or a name in :data:`OBJECTIVES`; the keyword options apply to a name only.
    :raises TypeError: when ``objective`` is neither.
    """
    if isinstance(objective, str):
        return make_objective(objective, num_particles=num_particles, iwae_gradient=iwae_gradient, alpha=alpha)
    if not callable(getattr(objective, "differentiable_loss", None)):
        raise TypeError(
            f"objective must be a name in {', '.join(OBJECTIVES)} or have differentiable_loss(model, guide, *args) "
            f"(a pyro.infer.ELBO), got {type(objective).__name__}"
        )
    return objective


def vectorized_particles(objective: Any) -> tuple[int, int]:
    """``(k, dim)``: the particles ``objective`` vectorizes in one plate and that plate's dim; ``(1, 0)`` for none.

    pyrovae's bounds (``RenyiBound``, ``IWAE``) put the plate at dim -2; Pyro's ELBOs
    at dim ``-max_plate_nesting`` (which they have counted the particle plate into).
    """
    k = getattr(objective, "num_particles", 1)
    if not (getattr(objective, "vectorize_particles", False) and isinstance(k, int) and k > 1):
        return 1, 0
    nesting = getattr(objective, "max_plate_nesting", 1)  # Pyro's default, inf, is guessed at the first step
    if isinstance(objective, RenyiBound) or not isinstance(nesting, int):
        return k, -2
    return k, -nesting


@dataclass(frozen=True)
class AuxiliaryLoss:
    """A named loss term added to the objective: ``loss = objective + weight * (N / B) * fn(model, guide, *batch)``.

    ``fn`` gets the trainer's model and guide as given (not bound to beta or N) and
    the minibatch (``x``, or ``x, y``), and returns a scalar tensor summed over the
    minibatch's B datapoints, such as the classifier's -log q(y | x) of a
    semi-supervised VAE (Kingma et al., 2014) or VQ-VAE's commitment loss. The trainer
    scales it by N / B, as the data plate scales the objective's per-datapoint terms,
    so that ``weight`` weighs it per datapoint against the objective, whatever B.

    References: D. P. Kingma, D. J. Rezende, S. Mohamed, M. Welling, "Semi-Supervised Learning with
    Deep Generative Models", NeurIPS 2014; A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural
    Discrete Representation Learning", NeurIPS 2017.

    :param name: an identifier; the trainer records the term's epoch mean per datapoint as ``aux_<name>``.
    :param weight: a finite number.
    :param fn: ``(model, guide, *batch) -> Tensor``, a differentiable scalar.
    """

    name: str
    weight: float
    fn: Callable[..., torch.Tensor]

    def __post_init__(self) -> None:
        """The name an identifier, the weight finite and ``fn`` callable, else a ``TypeError`` or ``ValueError``."""
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"an auxiliary loss's name must be an identifier, got {self.name!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float) or not math.isfinite(self.weight):
            raise ValueError(f"auxiliary loss {self.name!r}: weight must be a finite number, got {self.weight!r}")
        if not callable(self.fn):
            raise TypeError(f"auxiliary loss {self.name!r}: fn must be callable (model, guide, *batch) -> Tensor")


def check_auxiliary(aux: Any) -> tuple[AuxiliaryLoss, ...]:
    """``aux`` as a tuple of :class:`AuxiliaryLoss` with distinct names, else a ``TypeError``/``ValueError``."""
    if isinstance(aux, AuxiliaryLoss):
        aux = (aux,)
    terms = tuple(aux)
    for term in terms:
        if not isinstance(term, AuxiliaryLoss):
            raise TypeError(f"aux must hold AuxiliaryLoss terms, got {type(term).__name__}")
    names = [term.name for term in terms]
    if len(set(names)) < len(names):
        raise ValueError(f"auxiliary loss names must be distinct, got {names}")
    return terms
