"""The capacity-controlled objective of Burgess et al.: the KL pushed towards a target C that grows.

    loss = -E_q[log p(x | z)] + gamma |KL(q(z | x) || p(z)) - C(t)|,    C(t) = C_max min(1, t / T)

per datapoint, with the KL averaged over the batch inside the absolute value (as in the paper's
dSprites experiments: gamma = 1000, C_max = 25 nats over T = 100,000 steps). Early on C is near 0 and
the KL is held near it, so the latent carries little information; as C grows, the encoder may spend
more nats, and spends them first on the factors that improve the reconstruction most. The KL of a site
is analytic where Pyro's KL registry has it (a Normal guide against a Normal prior) and the sampled
log-ratio otherwise, as ``TraceMeanField_ELBO``'s. Every ELBO pyrovae reports is still the true one.

The target depends on the optimisation step t: the trainer asks for :meth:`CapacityELBO.at_step` before
each step, so a resumed run continues from its own step.

References: C. P. Burgess, I. Higgins, A. Pal, L. Matthey, N. Watters, G. Desjardins, A. Lerchner,
"Understanding disentangling in beta-VAE", NeurIPS 2017 Workshop on Learning Disentangled Representations.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from pyro.distributions.kl import kl_divergence

from pyrovae.inference.log_weights import (
    ParticleTraces,
    enumerated_dims,
    particle_traces,
    sample_sites,
    site_log_prob,
    site_weight,
)
from pyrovae.inference.renyi import require_reparameterized
from pyrovae.inference.vectorized import VectorizedObjective, require_spread


def kl_terms(traces: ParticleTraces) -> torch.Tensor:
    """KL(q(z | x) || p(z)) per particle and datapoint, ``(k, batch)``: analytic per site where Pyro knows it,
    the sampled log q - log p otherwise (masks and scales other than the plate's N / B applied)."""
    guide_sites = {s["name"]: s for s in sample_sites(traces.guide) if not s["is_observed"]}
    kl = 0.0
    for site in sample_sites(traces.model):
        if site["is_observed"]:
            continue
        q_site = guide_sites[site["name"]]
        try:
            kl = kl + site_weight(q_site, kl_divergence(q_site["fn"], site["fn"]))
        except NotImplementedError:  # no closed form: the single-sample log-ratio
            kl = kl + site_log_prob(q_site) - site_log_prob(site)
    return kl


@dataclasses.dataclass(frozen=True)
class _Target:
    capacity: float  # C_max, nats per datapoint
    capacity_steps: int  # T: steps over which C rises linearly from 0 to C_max
    step: int = 0  # t, the optimisation step the next loss is for

    @property
    def value(self) -> float:
        """C(t)."""
        return self.capacity * min(1.0, self.step / self.capacity_steps)


class CapacityELBO(VectorizedObjective):
    """Negative capacity-controlled objective, summed over the batch and scaled to the data set.

    :param gamma: the weight of |KL - C|.
    :param capacity: C_max, the target KL in nats per datapoint at the end of the warm-up.
    :param capacity_steps: T, the optimisation steps over which C rises from 0 to C_max.
    :param num_particles: samples of z per datapoint, vectorized in a plate at dim -2.
    """

    def __init__(
        self,
        gamma: float = 1000.0,
        capacity: float = 25.0,
        capacity_steps: int = 100_000,
        *,
        num_particles: int = 1,
        max_plate_nesting: int = 1,
    ) -> None:
        if capacity < 0 or capacity_steps < 1 or gamma <= 0:
            raise ValueError(
                f"capacity objective: need gamma > 0, capacity >= 0 and capacity_steps >= 1, got gamma {gamma}, "
                f"capacity {capacity}, capacity_steps {capacity_steps}"
            )
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.gamma = gamma
        self.target = _Target(capacity, capacity_steps)

    def at_step(self, step: int) -> CapacityELBO:
        """This objective with the target C(``step``) (0-based, counted over the whole run)."""
        objective = copy.copy(self)
        objective.target = dataclasses.replace(self.target, step=step)
        return objective

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The loss as a tensor: N [-mean log p(x | z) + gamma |mean KL - C|], reparameterized gradient."""
        traces = particle_traces(model, guide, *args, num_particles=self.num_particles, **kwargs)
        require_reparameterized(traces.guide, "objective capacity")
        if enumerated_dims(traces.guide) or enumerated_dims(traces.model):
            raise NotImplementedError("objective capacity does not enumerate discrete latents; use elbo")
        require_spread(traces.guide, "objective capacity holds KL(q || p) at a target")
        reconstruction = sum(site_log_prob(s) for s in sample_sites(traces.model) if s["is_observed"])  # (k, B)
        kl = kl_terms(traces)  # (k, B)
        num_data = traces.data_scale * reconstruction.shape[-1]
        return num_data * (-reconstruction.mean() + self.gamma * (kl.mean() - self.target.value).abs())
