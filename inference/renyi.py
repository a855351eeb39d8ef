"""The Renyi-alpha bound as a Pyro objective, correct under minibatch subsampling.

For each datapoint b the bound L_alpha(x_b) is computed from its own k
particles; the data plate's subsample scale N / B multiplies the per-datapoint
bounds *outside* the log-mean-exp:

    loss = -(N / B) sum_b L_alpha(x_b)

Pyro's ``RenyiELBO`` instead folds every site scale, the plate's N / B included,
into the log-weights inside the log-sum-exp, which changes the bound whenever the
data are subsampled. Here site scales other than the plate's (beta, masks) stay on
the log-weights, and the plate's does not.

References: Y. Li, R. E. Turner, "Renyi Divergence Variational Inference", NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.poutine.trace_struct import Trace

from pyrovae.inference.bounds import renyi_bound
from pyrovae.inference.log_weights import (
    ParticleTraces,
    data_scale,
    enumerated_dims,
    sample_sites,
    traced_log_weights,
)
from pyrovae.inference.vectorized import VectorizedObjective


def require_reparameterized(guide_trace: Trace, objective: str) -> None:
    """Raise a clear error if a sampled latent site of the guide cannot be reparameterized (an enumerated one
    is summed exactly inside each weight, not sampled)."""
    enumerated = enumerated_dims(guide_trace)
    for site in sample_sites(guide_trace):
        if not site["is_observed"] and not site["fn"].has_rsample and site["name"] not in enumerated:
            raise NotImplementedError(
                f"{objective} needs a reparameterizable guide, but site {site['name']!r} "
                f"({type(site['fn']).__name__}) has no rsample; use objective 'elbo' for this guide"
            )


class RenyiBound(VectorizedObjective):
    """Negative Renyi-alpha bound, summed over the data and scaled to the full data set.

    :param alpha: the Renyi order, ``alpha != 1`` (``0`` is IWAE; use ``Trace_ELBO`` for 1).
    :param num_particles: k, particles per datapoint, always vectorized in a plate at dim -2.
    :param max_plate_nesting: plates in the model, beyond the particle plate.
    """

    def __init__(self, alpha: float = 0.0, *, num_particles: int = 5, max_plate_nesting: int = 1) -> None:
        if alpha == 1:
            raise ValueError("alpha = 1 is the ELBO; use objective 'elbo'")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.alpha = alpha

    def bound(self, model: Callable, guide: Callable, *args, **kwargs) -> tuple[torch.Tensor, float]:
        """The per-datapoint bounds ``(batch,)`` of one draw, differentiable, and the data scale N / B."""
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        require_reparameterized(guide_trace, type(self).__name__)
        log_w = traced_log_weights(ParticleTraces(guide_trace, model_trace, data_scale(model_trace)))
        return renyi_bound(log_w, self.alpha), data_scale(model_trace)

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The loss as a tensor whose value is the negative bound and whose gradient is its estimator."""
        per_datapoint, data_scale = self.bound(model, guide, *args, **kwargs)
        return -data_scale * per_datapoint.sum()

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative bound of one draw, without gradients (its value is every gradient estimator's)."""
        with torch.no_grad():
            per_datapoint, scale = self.bound(model, guide, *args, **kwargs)
            return -scale * per_datapoint.sum().item()
