"""The IWAE bound L_k with VIMCO's gradient for latents that cannot be reparameterized (binary units, classes).

    L_k(x) = E[log (1/k) sum_j w_j],  w_j = p(x, h_j) / q(h_j | x),  h_j ~ q(h | x)

A sampled discrete h has no pathwise gradient; the score-function estimator of L_k is

    grad L_k = sum_j (L^ - L^_{-j}) grad log q(h_j | x) + sum_j w~_j grad log w_j,

where L^ = log (1/k) sum_i w_i is the sample's bound and L^_{-j} the same with w_j replaced
by the geometric mean of the other weights, exp(mean_{i != j} log w_i): a baseline for
particle j made of the other particles, so that h_j's learning signal is how much *it*
raised the bound, with no baseline network to fit. ``w~_j = w_j / sum_i w_i``; the second
sum is the reparameterized sites' gradient too, so continuous latents beside h keep theirs.

References: A. Mnih, D. J. Rezende, "Variational Inference for Monte Carlo Objectives", ICML 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions.util import scale_and_mask

from pyrovae.inference.bounds import log_mean_exp
from pyrovae.inference.log_weights import enumerated_dims, particle_traces, sample_sites, traced_log_weights
from pyrovae.inference.renyi import RenyiBound


def leave_one_out_bounds(log_w: torch.Tensor) -> torch.Tensor:
    """L^_{-j} per particle j and datapoint, ``(k, batch)``, from ``(k, batch)`` log-weights: log (1/k) of the
    sum of the weights with w_j replaced by the geometric mean of the others (Mnih & Rezende, 2016, eq. 9)."""
    k = log_w.shape[0]
    if k < 2:
        raise ValueError("VIMCO's leave-one-out baselines need at least 2 particles")
    others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # (k, batch): mean_{i != j} log w_i
    diagonal = torch.eye(k, dtype=torch.bool, device=log_w.device)[..., None]  # (k_j, k_i, 1)
    replaced = torch.where(diagonal, others[:, None], log_w[None])  # (k_j, k_i, batch): w_j -> its baseline
    return log_mean_exp(replaced, dim=1)


def score_log_q(guide_trace) -> torch.Tensor | float:
    """sum of log q(h_j | x) over the guide's sampled sites without ``rsample`` (masked, not scaled: the
    score of the sampling distribution, whatever beta), ``(k, batch)``; 0 when there are none.

    :raises NotImplementedError: for such a site downstream of an enumerated one (its log q has enumerated dims).
    """
    enumerated = enumerated_dims(guide_trace)
    total: torch.Tensor | float = 0.0
    for site in sample_sites(guide_trace):
        if site["is_observed"] or site["fn"].has_rsample or site["name"] in enumerated:
            continue
        log_q = scale_and_mask(site["fn"].log_prob(site["value"]), 1.0, site["mask"])
        if log_q.dim() > 2:
            raise NotImplementedError(
                f"VIMCO: the sampled site {site['name']!r} reads an enumerated latent; enumerate or relax it too"
            )
        total = total + log_q
    return total


class VIMCO(RenyiBound):
    """Negative IWAE bound L_k whose gradient is VIMCO's for the guide's non-reparameterizable sampled sites
    (and the usual one for everything else); usable with ``pyro.infer.SVI``. ``loss`` is the negative bound.

    :param num_particles: k >= 2, vectorized in a plate at dim -2.
    """

    def __init__(self, num_particles: int = 5, *, max_plate_nesting: int = 1) -> None:
        if num_particles < 2:
            raise ValueError(f"VIMCO's leave-one-out baselines need num_particles >= 2, got {num_particles}")
        super().__init__(0.0, num_particles=num_particles, max_plate_nesting=max_plate_nesting)

    def bound(self, model: Callable, guide: Callable, *args, **kwargs) -> tuple[torch.Tensor, float]:
        """The per-datapoint bounds ``(batch,)`` of one draw, as a surrogate whose gradient is VIMCO's, and N / B."""
        traces = particle_traces(model, guide, *args, num_particles=self.num_particles, **kwargs)
        log_w = traced_log_weights(traces)  # (k, batch); its gradient is sum_j w~_j grad log w_j
        bound = log_mean_exp(log_w)  # (batch,)
        signal = (bound - leave_one_out_bounds(log_w)).detach()  # (k, batch): L^ - L^_{-j}
        score = (signal * score_log_q(traces.guide)).sum(0)  # (batch,)
        return bound + score - score.detach(), traces.data_scale
