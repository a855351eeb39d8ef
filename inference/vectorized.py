"""The base of pyrovae's own objectives: vectorized particles and Pyro's ``ELBO`` interface from one loss.

An objective here defines ``differentiable_loss(model, guide, *args, **kwargs)``, a tensor whose value is
its negative objective and whose gradient is its estimator's; ``loss`` (for ``SVI.evaluate_loss``) and
``loss_and_grads`` (for ``SVI.step``) follow from it, and its particles run in one plate at dim -2
(:func:`~pyrovae.inference.log_weights.particle_traces`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions import Delta
from pyro.infer import ELBO
from pyro.poutine.trace_struct import Trace

from pyrovae.inference.diagnostics import factors
from pyrovae.inference.log_weights import particle_traces, sample_sites


class VectorizedObjective(ELBO):
    """A Pyro ``ELBO`` whose ``num_particles`` particles are always vectorized in a plate at dim -2.

    :param num_particles: k, particles per datapoint.
    :param max_plate_nesting: plates in the model, beyond the particle plate.
    """

    def __init__(self, *, num_particles: int = 1, max_plate_nesting: int = 1) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=True)

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple[Trace, Trace]:
        """Model and guide traces of ``num_particles`` vectorized particles."""
        traces = particle_traces(model, guide, *args, num_particles=self.num_particles, **kwargs)
        return traces.model, traces.guide

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative objective of one draw, without gradients."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Back-propagate :meth:`differentiable_loss` and return its value (for ``SVI.step``)."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


def require_spread(guide_trace: Trace, objective: str) -> None:
    """Raise a clear error for a guide latent that is a point mass (an autoencoder's code), which has no
    density for ``objective`` to work on."""
    for site in sample_sites(guide_trace):
        if not site["is_observed"] and isinstance(factors(site["fn"]), Delta):
            raise NotImplementedError(
                f"{objective}, and q({site['name']} | x) is a point mass (an autoencoder's code), which has no "
                "posterior spread; use objective elbo"
            )
