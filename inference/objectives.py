"""Training objectives by name, each a ``pyro.infer.ELBO`` usable with ``SVI``."""

from __future__ import annotations

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
