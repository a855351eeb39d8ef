"""The importance-weighted autoencoder objective, with standard or DReG gradients.

    L_k(x) = E[log (1/k) sum_i w_i],  w_i = p(x, z_i) / q(z_i | x),  z_i ~ q(z | x)

per datapoint, scaled by N / B outside the log-mean-exp (see :mod:`.renyi`, of
which IWAE is the alpha = 0 case).

``gradient="standard"`` differentiates the bound through the reparameterized
samples. Its guide gradient's signal-to-noise ratio decays as k grows.
``gradient="dreg"`` is the doubly reparameterized estimator, which removes the
score-function term for the guide:

    grad_phi = sum_i (w~_i)^2 (d log w_i / d z_i) (d z_i / d phi),   w~_i = w_i / sum_j w_j
    grad_theta = sum_i w~_i grad_theta log p(x, z_i)             (the standard one)

With beta-scaled latent sites (beta-VAE, KL annealing), log w_i = log p(x | z_i)
+ beta (log p(z_i) - log q(z_i | x)) and only a beta share of the score-function
term is removed, so the guide's coefficient becomes (1 - beta) w~_i + beta (w~_i)^2
(beta = 0, masked latents: the plain reparameterized gradient). Latent sites
with different scales are rejected.

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016;
G. Tucker, D. Lawson, S. Gu, C. J. Maddison, "Doubly Reparameterized Gradient Estimators for
Monte Carlo Objectives", ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pyro import poutine

from pyrovae.inference.bounds import log_mean_exp
from pyrovae.inference.log_weights import (
    conditioned_log_densities,
    data_scale,
    sample_sites,
    site_weight,
    vectorized,
)
from pyrovae.inference.renyi import RenyiBound, require_reparameterized

GRADIENTS = ("standard", "dreg")


class IWAE(RenyiBound):
    """Negative IWAE bound L_k, summed over the data and scaled to the full data set.

    Usable with ``pyro.infer.SVI`` like ``Trace_ELBO``; ``loss`` is the negative bound
    itself (not a surrogate). With ``num_particles=1`` it equals ``Trace_ELBO``.

    :param num_particles: k.
    :param gradient: ``"standard"`` or ``"dreg"`` (needs a reparameterizable guide).
    """

    def __init__(self, num_particles: int = 5, *, gradient: str = "standard", max_plate_nesting: int = 1) -> None:
        if gradient not in GRADIENTS:
            raise ValueError(f"unknown IWAE gradient {gradient!r}; choose from {', '.join(GRADIENTS)}")
        super().__init__(0.0, num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.gradient = gradient

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The negative bound as a tensor whose gradient is the chosen estimator's."""
        if self.gradient == "standard":
            return super().differentiable_loss(model, guide, *args, **kwargs)
        return self._dreg_loss(model, guide, *args, **kwargs)

    def _dreg_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        k = self.num_particles
        guide_trace = poutine.trace(vectorized(guide, k)).get_trace(*args, **kwargs)
        latents = {s["name"]: s for s in sample_sites(guide_trace) if not s["is_observed"]}
        require_reparameterized(guide_trace, "IWAE(gradient='dreg')")
        # Leaves: the sampled values cut from their path to phi, so that d/dz holds q's parameters fixed.
        leaves = {name: site["value"].detach().requires_grad_() for name, site in latents.items()}
        log_p, log_q = conditioned_log_densities(model, guide, leaves, *args, num_particles=k, **kwargs)
        log_w = log_p - log_q  # (k, batch)
        w_tilde = torch.softmax(log_w.detach(), dim=0)  # normalized weights per datapoint
        beta = _latent_scale(latents.values())
        coefficient = (1 - beta) * w_tilde + beta * w_tilde**2  # w~^2 at beta = 1
        dlogw_dz = torch.autograd.grad((coefficient * log_w).sum(), list(leaves.values()), retain_graph=True)
        guide_surrogate = sum((g * latents[name]["value"]).sum() for name, g in zip(leaves, dlogw_dz, strict=True))
        model_surrogate = (w_tilde * log_p).sum()  # theta's gradient; log p at the leaves has no path to phi
        surrogate = model_surrogate + guide_surrogate
        bound = log_mean_exp(log_w.detach()).sum()
        return -data_scale(guide_trace) * (bound + surrogate - surrogate.detach())


def _latent_scale(latents: Iterable[dict]) -> float:
    """The one scale (beta; 0 where masked) that the guide's latent sites share, the plate's N / B undone.

    :raises NotImplementedError: when the latent sites are scaled differently, or by tensors.
    """
    scales = set()
    for site in latents:
        if torch.is_tensor(site["scale"]) or torch.is_tensor(site["mask"]):
            raise NotImplementedError(f"IWAE(gradient='dreg'): site {site['name']!r} has a tensor scale or mask")
        scales.add(0.0 if site["mask"] is False else float(site_weight(site)))
    if len(scales) > 1:
        raise NotImplementedError(
            f"IWAE(gradient='dreg') needs one scale for every latent site, got {sorted(scales)}; use 'standard'"
        )
    return scales.pop() if scales else 1.0
