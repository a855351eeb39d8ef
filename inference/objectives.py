"""Training objectives by name, each a ``pyro.infer.ELBO`` usable with ``SVI``, and auxiliary loss terms.

An objective is any object with ``differentiable_loss(model, guide, *args, **kwargs)``
(every ``pyro.infer.ELBO``: Pyro's ``Trace_ELBO``, ``TraceEnum_ELBO``, ... and
pyrovae's); its options (particles, gradient estimator, order) live with it. A name
in :data:`OBJECTIVES` builds pyrovae's own (:func:`make_objective`) with the options that
objective declares (its builder's keywords: :func:`objective_options`), checked in one place
(:func:`check_options`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer import ELBO, TraceEnum_ELBO

from pyrovae.errors import FLOAT32_MAX, FieldError, check_choice, check_float, check_int
from pyrovae.inference.capacity import CapacityELBO
from pyrovae.inference.iwae import GRADIENTS, IWAE
from pyrovae.inference.renyi import RenyiBound
from pyrovae.inference.tc_elbo import TCELBO
from pyrovae.inference.trace_elbo import TraceELBO, TraceGraphELBO, TraceMeanFieldELBO
from pyrovae.inference.vimco import VIMCO


def _elbo(*, num_particles: int = 1, max_plate_nesting: int = 1) -> ELBO:
    """Pyro's ``Trace_ELBO`` (Monte-Carlo KL): :class:`~pyrovae.inference.trace_elbo.TraceELBO`."""
    return TraceELBO(
        num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=max_plate_nesting
    )


def _mf_elbo(*, num_particles: int = 1, max_plate_nesting: int = 1) -> ELBO:
    """Pyro's ``TraceMeanField_ELBO`` (analytic KL where Pyro knows it): :class:`~.trace_elbo.TraceMeanFieldELBO`."""
    return TraceMeanFieldELBO(
        num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=max_plate_nesting
    )


def _iwae(*, num_particles: int = 1, gradient: str = "standard", max_plate_nesting: int = 1) -> ELBO:
    """L_k with k = ``num_particles`` and the ``standard`` or ``dreg`` gradient: :class:`~.iwae.IWAE`."""
    return IWAE(num_particles, gradient=gradient, max_plate_nesting=max_plate_nesting)


def _renyi(*, num_particles: int = 1, alpha: float = 0.5, max_plate_nesting: int = 1) -> ELBO:
    """The Renyi bound of order ``alpha``: :class:`~.renyi.RenyiBound`."""
    return RenyiBound(alpha, num_particles=num_particles, max_plate_nesting=max_plate_nesting)


def _tc_elbo(*, num_particles: int = 1, tc_weight: float = 6.0, max_plate_nesting: int = 1) -> ELBO:
    """beta-TCVAE: the ELBO with its total correlation weighted by ``tc_weight``: :class:`~.tc_elbo.TCELBO`."""
    return TCELBO(tc_weight, num_particles=num_particles, max_plate_nesting=max_plate_nesting)


def _capacity(
    *,
    num_particles: int = 1,
    gamma: float = 1000.0,
    capacity: float = 25.0,
    capacity_steps: int = 100_000,
    max_plate_nesting: int = 1,
) -> ELBO:
    """gamma |KL - C| with C rising to ``capacity`` over ``capacity_steps``: :class:`~.capacity.CapacityELBO`."""
    return CapacityELBO(
        gamma, capacity, capacity_steps, num_particles=num_particles, max_plate_nesting=max_plate_nesting
    )


# Each objective's options are its builder's keywords (max_plate_nesting apart), with their defaults.
OBJECTIVES: dict[str, Callable[..., ELBO]] = {
    "elbo": _elbo,
    "mf-elbo": _mf_elbo,
    "iwae": _iwae,
    "renyi": _renyi,
    "tc-elbo": _tc_elbo,
    "capacity": _capacity,
}
SAMPLED_ONLY = ("mf-elbo", "tc-elbo", "capacity")  # objectives that would sample a discrete latent, not sum it


def objective_options(name: str) -> dict[str, Any]:
    """The options of objective ``name`` with their defaults, e.g. ``{"num_particles": 1, "alpha": 0.5}``."""
    check_choice("objective", name, tuple(OBJECTIVES))
    parameters = inspect.signature(OBJECTIVES[name]).parameters.values()
    return {p.name: p.default for p in parameters if p.name != "max_plate_nesting"}


def check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` of objective ``name`` checked, the defaults of those left out filled in.

    :raises FieldError: (a ``ValueError``) naming an option the objective does not take or a value out of range.
    """
    if not isinstance(options, Mapping):
        raise FieldError("objective_options", f"must be a table of option values, got {options!r}")
    known = objective_options(name)
    for key in options:
        if key not in known:
            raise FieldError(key, f"is not an option of objective {name} (it takes {', '.join(known)})")
    options = {**known, **options}
    check_int("num_particles", options["num_particles"])
    if "gradient" in options:
        check_choice("gradient", options["gradient"], GRADIENTS)
    if "alpha" in options:
        check_float("alpha", options["alpha"], low=-FLOAT32_MAX)
        if options["alpha"] == 1:
            raise FieldError("alpha", "must not be 1 (the Renyi bound of order 1 is the ELBO: use objective elbo)")
    if "tc_weight" in options:
        check_float("tc_weight", options["tc_weight"])
    if "gamma" in options:
        check_float("gamma", options["gamma"], positive=True)
        check_float("capacity", options["capacity"])
        check_int("capacity_steps", options["capacity_steps"])
    return options


def make_objective(
    name: str, *, max_plate_nesting: int = 1, enumerated: bool = False, baselines: bool = False, **options: Any
) -> ELBO:
    """Build the objective ``name`` of :data:`OBJECTIVES` with its ``options`` (particles vectorized).

    :param name: ``"elbo"`` (Pyro's ``Trace_ELBO``: Monte-Carlo KL), ``"mf-elbo"`` (Pyro's
        ``TraceMeanField_ELBO``: analytic KL where Pyro knows it), ``"iwae"`` (L_k with
        k = ``num_particles``), ``"renyi"`` (the Renyi bound of order ``alpha``), ``"tc-elbo"`` (beta-TCVAE:
        the total correlation weighted by ``tc_weight``) or ``"capacity"`` (``gamma`` |KL - C|, C rising to
        ``capacity`` nats over ``capacity_steps`` steps).
    :param max_plate_nesting: plates in the model (pyrovae models have one, the data plate).
    :param enumerated: model or guide has sites to enumerate (``infer={"enumerate": "parallel"}``):
        ``"elbo"`` is then Pyro's ``TraceEnum_ELBO``, which sums them exactly; ``"iwae"`` and ``"renyi"``
        sum them inside each weight (:func:`~pyrovae.inference.log_weights.log_weights`); ``"mf-elbo"``,
        which would sample them, is refused.
    :param baselines: the guide has score-function sites with baselines (``infer={"baseline": ...}``, NVIL):
        ``"elbo"`` is then Pyro's ``TraceGraph_ELBO`` (:class:`~.trace_elbo.TraceGraphELBO`), which fits and
        subtracts them; ``"iwae"`` (standard gradient, k >= 2) is L_k with VIMCO's leave-one-out baselines
        instead (:class:`~.vimco.VIMCO`); ``"mf-elbo"`` and ``"renyi"`` are refused.
    :param options: the objective's own (:func:`objective_options`): ``num_particles`` (every
        objective: samples of z per datapoint, drawn in one vectorized pass), ``gradient``
        (iwae: ``"standard"`` or ``"dreg"``), ``alpha`` (renyi), ``tc_weight`` (tc-elbo), ``gamma``, ``capacity``
        and ``capacity_steps`` (capacity).
    :raises ValueError: an unknown name, an option the objective does not take, a value out of range.
    """
    options = check_options(name, options)
    if enumerated and name in SAMPLED_ONLY:
        raise ValueError(
            f"objective {name} does not enumerate discrete latents (it would sample them); use elbo, which sums "
            "them exactly, or iwae"
        )
    if baselines and name == "iwae" and options["gradient"] == "standard":
        return VIMCO(options["num_particles"], max_plate_nesting=max_plate_nesting)  # checks k >= 2
    if baselines and name != "elbo":
        raise ValueError(
            f"objective {name}{' with the dreg gradient' if name == 'iwae' else ''} needs a reparameterized guide, "
            "and a score-function latent (estimator score) is not: use elbo (NVIL), iwae with the standard "
            "gradient (VIMCO), or another estimator (enumerate, relaxed)"
        )
    if baselines and not enumerated:
        return TraceGraphELBO(num_particles=options["num_particles"], max_plate_nesting=max_plate_nesting)
    if enumerated and name == "elbo":
        k = options["num_particles"]
        return TraceEnum_ELBO(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=max_plate_nesting)
    return OBJECTIVES[name](max_plate_nesting=max_plate_nesting, **options)


def as_objective(
    objective: Any, options: Mapping[str, Any] | None = None, *, enumerated: bool = False, baselines: bool = False
) -> ELBO:
    """``objective`` itself when it has ``differentiable_loss``, else the objective it names, built with ``options``.

    :param objective: an ELBO-like object (``pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)``, ...)
        or a name in :data:`OBJECTIVES`; ``options`` and ``enumerated`` (:func:`make_objective`) apply to a name only.
    :raises TypeError: when ``objective`` is neither.
    """
    if isinstance(objective, str):
        return make_objective(objective, enumerated=enumerated, baselines=baselines, **(options or {}))
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
