"""The beta-TCVAE objective: the ELBO with its total-correlation term weighted apart.

The ELBO's KL term, averaged over the data, splits in three (Chen et al., 2018, eq. 2):

    E_p(x)[KL(q(z | x) || p(z))] = I_q(x; z) + KL(q(z) || prod_d q(z_d)) + sum_d KL(q(z_d) || p(z_d))
                                    (index-code MI)  (total correlation, TC)   (dimension-wise KL)

with q(z) = E_p(x)[q(z | x)] the aggregate posterior. beta-TCVAE weighs the TC by ``tc_weight``
and the other two by beta (1 unless a KL weight is set):

    loss = -[E_q[log p(x | z)] - beta (MI + TC + dim-KL)] + (tc_weight - beta) TC

so that it is the beta-weighted negative ELBO plus ``(tc_weight - beta)`` times an estimate of the TC.
log q(z_i) and log q(z_id) are estimated by minibatch-weighted sampling (MWS) over the B datapoints
of the batch:

    log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log B,   log q(z_id) ~ logsumexp_j log q(z_id | x_j) - log B

which needs a guide whose q(z | x) factorizes over the dimensions of its one latent site (a diagonal
Normal). Chen et al. normalize by log(N B) instead of log B (N the data set's size), which adds the
constant (D - 1) log N to the TC estimate and changes no gradient; with log B, a batch holding the
whole data set gives the aggregate posterior's TC exactly. The estimate is biased for B < N (consistent
as B grows); only the training loss uses it: every ELBO pyrovae reports is the true one.

References: R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, "Isolating Sources of Disentanglement in
Variational Autoencoders", NeurIPS 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro.distributions import Independent

from pyrovae.inference.log_weights import (
    enumerated_dims,
    particle_traces,
    sample_sites,
    site_weight,
    traced_log_weights,
)
from pyrovae.inference.renyi import require_reparameterized
from pyrovae.inference.vectorized import VectorizedObjective, require_spread


def pairwise_log_q(q: Independent, z: torch.Tensor) -> torch.Tensor:
    """log q(z_id | x_j) for every pair of datapoints i, j and dimension d, ``(B_i, *particles, B_j, D)``.

    :param q: the guide's distribution of the batch, batch shape ``(*particles, B)``, its event
        ``(D,)`` independent univariate dimensions (``Normal(loc, scale).to_event(1)``).
    :param z: its sample, ``(*particles, B, D)``.
    """
    # z_i moved to the front and a B_j dim made beside D: (B_i, *particles, 1, D) broadcasts
    # against the base's batch (*particles, B_j, D), so entry [i, ..., j, d] is log q_d(z_id | x_j)
    return q.base_dist.log_prob(z.movedim(-2, 0).unsqueeze(-2))


def total_correlation(log_q_pairs: torch.Tensor) -> torch.Tensor:
    """The MWS estimate of log q(z_i) - sum_d log q(z_id) per datapoint i, ``(*particles, B)``.

    :param log_q_pairs: :func:`pairwise_log_q`, ``(B_i, *particles, B_j, D)``.
    """
    log_b = math.log(log_q_pairs.shape[-2])
    log_q_joint = log_q_pairs.sum(-1).logsumexp(-1) - log_b  # (B_i, *particles): log q(z_i)
    log_q_marginals = (log_q_pairs.logsumexp(-2) - log_b).sum(-1)  # sum_d log q(z_id)
    return (log_q_joint - log_q_marginals).movedim(0, -1)  # (*particles, B)


class TCELBO(VectorizedObjective):
    """Negative beta-TCVAE objective, summed over the batch and scaled to the data set like ``Trace_ELBO``.

    :param tc_weight: the total correlation's weight (Chen et al.'s beta; 6 on dSprites in their paper),
        beta the weight of the other two KL terms; ``tc_weight = beta`` is the beta-weighted ELBO.
    :param num_particles: samples of z per datapoint, vectorized in a plate at dim -2.
    :param max_plate_nesting: plates in the model, beyond the particle plate.
    """

    def __init__(self, tc_weight: float = 6.0, *, num_particles: int = 1, max_plate_nesting: int = 1) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.tc_weight = tc_weight

    def objective(self, model: Callable, guide: Callable, *args, **kwargs) -> tuple[torch.Tensor, float]:
        """The per-datapoint objective ``(batch,)`` (averaged over particles), differentiable, and N / B."""
        traces = particle_traces(model, guide, *args, num_particles=self.num_particles, **kwargs)
        require_reparameterized(traces.guide, "objective tc-elbo")
        if enumerated_dims(traces.guide) or enumerated_dims(traces.model):
            raise NotImplementedError("objective tc-elbo does not enumerate discrete latents; use elbo")
        require_spread(traces.guide, "objective tc-elbo estimates the total correlation of q(z)")
        site = _factorized_latent(traces.guide)
        log_w = traced_log_weights(traces)  # (k, B): log p(x | z) + beta (log p(z) - log q(z | x))
        tc = total_correlation(pairwise_log_q(site["fn"], site["value"]))
        tc = tc.reshape(log_w.shape)  # (k, B); without a particle plate (B,) as well
        penalty = self.tc_weight * tc - site_weight(site, tc)  # (tc_weight - beta) TC; beta = 0 masked
        return (log_w - penalty).mean(0), traces.data_scale

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The loss as a tensor: its value the negative objective, its gradient the reparameterized one."""
        per_datapoint, data_scale = self.objective(model, guide, *args, **kwargs)
        return -data_scale * per_datapoint.sum()


def _factorized_latent(guide_trace) -> dict:
    """The guide's one latent site, checked to factorize over its dimensions.

    :raises NotImplementedError: more than one latent site, or one whose dimensions are dependent.
    """
    latents = [s for s in sample_sites(guide_trace) if not s["is_observed"]]
    if len(latents) != 1:
        names = ", ".join(s["name"] for s in latents) or "none"
        raise NotImplementedError(
            f"objective tc-elbo estimates the total correlation of one latent site, and the guide has {names}; "
            "use a model with one latent site (elbo for the others)"
        )
    fn = latents[0]["fn"]
    if not (isinstance(fn, Independent) and fn.reinterpreted_batch_ndims == 1 and fn.base_dist.event_shape == ()):
        raise NotImplementedError(
            f"objective tc-elbo needs q({latents[0]['name']} | x) to factorize over its dimensions (a diagonal "
            f"Normal, --guide normal), got {type(fn).__name__}"
        )
    return latents[0]
