"""Per-datapoint log-weights log p(x, z) - log q(z | x) for any Pyro model and guide.

Pyro's ``vectorized_importance_weights`` sums over the data plate and returns one
joint weight per minibatch; bounds such as IWAE need one weight per datapoint and
particle. Here the particles are vectorized in a plate at dim -2 (the data plate
is at dim -1), every site's log-density is kept at shape ``(num_particles, batch)``,
and the data plate's subsample scale N / B is divided out, while ``poutine.scale``
factors (beta) and masks stay applied.

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

PARTICLE_PLATE = "particles"


def _vectorized(fn: Callable, num_particles: int) -> Callable:
    def fn_with_particles(*args, **kwargs):
        with pyro.plate(PARTICLE_PLATE, num_particles, dim=-2):
            return fn(*args, **kwargs)

    return fn_with_particles


def _site_log_prob(site: dict) -> torch.Tensor:
    """A site's log-density per particle and datapoint, without the plate subsample scale."""
    if not any(f.dim == -1 and f.name != PARTICLE_PLATE for f in site["cond_indep_stack"]):
        raise ValueError(
            f"site {site['name']!r} is outside a plate at dim -1; per-datapoint log-weights "
            "need every sample site inside the data plate"
        )
    scale = site["scale"]
    for frame in site["cond_indep_stack"]:
        if frame.full_size is not None and frame.full_size != frame.size:
            scale = scale / (frame.full_size / frame.size)  # undo the plate's N / B
    log_p = site["fn"].log_prob(site["value"])  # (num_particles, batch)
    return scale_and_mask(log_p, scale, site["mask"])


def elbo_terms(
    model: Callable, guide: Callable, *args, num_particles: int = 1, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample z ~ q(z | x) and split log w = log p(x, z) - log q(z | x) in two.

    :returns: ``(log_likelihood, log_ratio)``, each ``(num_particles, batch)``:
        ``log_likelihood`` sums the model's observed sites (log p(x | z)) and
        ``log_ratio`` sums log q(z | x) - log p(z) over the latent sites, so that
        ``log w = log_likelihood - log_ratio`` and ``E_q[log_ratio]`` is the KL.
    """
    guide_trace = poutine.trace(_vectorized(guide, num_particles)).get_trace(*args, **kwargs)
    replayed = poutine.replay(_vectorized(model, num_particles), trace=guide_trace)
    model_trace = poutine.trace(replayed).get_trace(*args, **kwargs)
    log_likelihood, log_ratio = [], []
    for trace, sign in ((model_trace, -1.0), (guide_trace, 1.0)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if trace is model_trace and site["is_observed"]:
                log_likelihood.append(_site_log_prob(site))
            elif not site["is_observed"]:
                log_ratio.append(sign * _site_log_prob(site))
    if not log_likelihood:
        raise ValueError("the model has no observed sample site")
    return sum(log_likelihood), sum(log_ratio) if log_ratio else torch.zeros_like(log_likelihood[0])


def log_weights(model: Callable, guide: Callable, *args, num_particles: int = 1, **kwargs) -> torch.Tensor:
    """log p(x, z_i) - log q(z_i | x) for i = 1..num_particles, per datapoint.

    :param num_particles: k, the number of samples z_i ~ q(z | x) per datapoint (vectorized).
    :returns: tensor of shape ``(num_particles, batch)``.
    """
    log_likelihood, log_ratio = elbo_terms(model, guide, *args, num_particles=num_particles, **kwargs)
    return log_likelihood - log_ratio
