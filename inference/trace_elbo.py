"""The ELBO with sampled or analytic KL: Pyro's estimators, without a host sync per step.

    ELBO(x) = E_q[log p(x, z) - log q(z | x)]                    (Trace_ELBO)
            = E_q[log p(x | z)] - KL(q(z | x) || p(z))           (TraceMeanField_ELBO)

Pyro's ``Trace_ELBO.differentiable_loss`` and ``TraceMeanField_ELBO``'s read the loss
back to the host (``torch_item``) for every particle and site, and test it for
NaN (``warn_if_nan``, one more read and a backward hook): on a GPU each read
waits for the whole step. For a fully reparameterized guide the surrogate *is*
the ELBO, so :class:`TraceELBO` and :class:`TraceMeanFieldELBO` return it as a
tensor, with the same value and gradient as Pyro's, and leave NaN checks to the
caller (pyrovae's trainer checks every ``log_every`` steps). A guide with a
site that cannot be reparameterized (score-function terms) takes Pyro's own
particle computation. ``loss`` and ``loss_and_grads`` are Pyro's.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014;
D. Wingate, T. Weber, "Automated Variational Inference in Probabilistic Programming", 2013.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.poutine.trace_struct import Trace


def _reparameterized(guide_trace: Trace) -> bool:
    """Whether no guide site has a score-function term (the traces' score parts are computed)."""
    return all(
        is_identically_zero(site["score_parts"].score_function)
        for site in guide_trace.nodes.values()
        if site["type"] == "sample"
    )


def _surrogate(pyro_particle: tuple[torch.Tensor | float, torch.Tensor]) -> torch.Tensor:
    """Pyro's ``(loss, surrogate_loss)`` of a particle as one tensor: the loss's value, the surrogate's gradient."""
    loss, surrogate = pyro_particle
    return loss + (surrogate - surrogate.detach())


class TraceELBO(Trace_ELBO):
    """``Trace_ELBO`` whose ``differentiable_loss`` stays on the device (same value and gradient)."""

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The negative ELBO, averaged over particles, as a tensor."""
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            if _reparameterized(guide_trace):  # log p - log q: its gradient is the reparameterized one
                particle = guide_trace.log_prob_sum() - model_trace.log_prob_sum()
            else:
                particle = _surrogate(self._differentiable_loss_particle(model_trace, guide_trace))
            loss = loss + particle / self.num_particles
        return loss


class TraceGraphELBO(TraceGraph_ELBO):
    """Pyro's ``TraceGraph_ELBO`` (score-function gradients, Rao-Blackwellized by the dependency graph, with
    the baselines a guide's sites declare) with a ``differentiable_loss``: the negative ELBO's value and the
    gradient of Pyro's surrogate, baseline losses included, so that one optimizer step fits the baselines too.

    References: A. Mnih, K. Gregor, "Neural Variational Inference and Learning in Belief Networks", ICML 2014
    (NVIL's input-dependent baseline); J. Schulman et al., "Gradient Estimation Using Stochastic Computation
    Graphs", NeurIPS 2015.
    """

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The negative ELBO, averaged over particles; its gradient the surrogate's (with the baselines')."""
        elbo, surrogate = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        return -torch.as_tensor(elbo).detach() + (surrogate - surrogate.detach())


class TraceMeanFieldELBO(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` whose ``differentiable_loss`` stays on the device (same value and gradient).

    The KL of a latent site is analytic where Pyro's KL registry has it, and
    ``log q - log p`` at the sampled value otherwise.
    """

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The negative ELBO, averaged over particles, as a tensor."""
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss = loss - _mean_field_elbo(model_trace, guide_trace) / self.num_particles
        return loss


def _mean_field_elbo(model_trace: Trace, guide_trace: Trace) -> torch.Tensor:
    """sum log p(x | z) - sum KL(q || p) over the sites of one particle (Pyro's mean-field rule)."""
    elbo = 0.0
    for name, model_site in model_trace.nodes.items():
        if model_site["type"] != "sample":
            continue
        if model_site["is_observed"]:
            elbo = elbo + model_site["log_prob_sum"]
            continue
        guide_site = guide_trace.nodes[name]
        try:
            kl = scale_and_mask(
                kl_divergence(guide_site["fn"], model_site["fn"]), guide_site["scale"], guide_site["mask"]
            )  # (batch_shape,): per datapoint (and particle)
            elbo = elbo - kl.sum()
        except NotImplementedError:  # no closed form: the sampled log-ratio
            elbo = elbo + model_site["log_prob_sum"] - guide_site["score_parts"].entropy_term.sum()
    for name, guide_site in guide_trace.nodes.items():  # auxiliary guide sites: their entropy
        if guide_site["type"] == "sample" and name not in model_trace.nodes:
            elbo = elbo - guide_site["score_parts"].entropy_term.sum()
    return elbo
