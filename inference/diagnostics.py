"""Posterior diagnostics: posterior means, active units and KL per latent dimension.

A latent dimension u is *active* when its posterior mean moves with the data:
``Cov_x(E_q[z_u | x]) > 0.01`` (Burda et al., 2016, section 5.2). Inactive units
are ones the model has switched off, the visible sign of posterior collapse
(Bowman et al., 2016): the posterior equals the prior and the decoder ignores z.

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016;
S. R. Bowman et al., "Generating Sentences from a Continuous Space", CoNLL 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pyro import poutine
from pyro.distributions import Categorical, Delta, Distribution, Independent
from pyro.distributions.kl import kl_divergence
from pyro.poutine.util import site_is_subsample

from pyrovae.inference.log_weights import vectorized
from pyrovae.primitives import batch_args

ACTIVE_THRESHOLD = 0.01
COLLAPSE_KL = 0.01  # nats per datapoint for the whole latent: below it, q(z | x) is the prior
KL_SAMPLES = 64  # draws of the Monte-Carlo KL per dimension, where no closed form exists


class PosteriorCollapseWarning(UserWarning):
    """The guide has collapsed onto the prior: no active units, or almost no KL."""


def is_latent(site: dict) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


@torch.no_grad()
def posterior_means(
    guide: Callable,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]],
    *,
    num_samples: int = 100,
    **kwargs,
) -> dict[str, torch.Tensor]:
    """E_q[z | x] for every latent site of ``guide``, stacked over the data: ``{site: (N, D)}``.

    In a guide with several latent sites, a site's distribution may depend on a
    sampled upstream latent (q(z_2 | z_1) of a hierarchical guide); its mean is then
    E_q(z_1 | x)[E_q[z_2 | z_1]], averaged over ``num_samples`` vectorized draws of the
    upstream latents (one draw would add its noise to Cov_x and inflate the active units).
    """
    means: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        x, *inputs = batch_args(batch)
        sites = [s for s in poutine.trace(guide).get_trace(x, *inputs, **kwargs).nodes.values() if is_latent(s)]
        if len(sites) > 1:  # (num_samples, batch, ...) means, averaged over the upstream draws
            trace = poutine.trace(vectorized(guide, num_samples)).get_trace(x, *inputs, **kwargs)
            sites = [s for s in trace.nodes.values() if is_latent(s)]
        for site in sites:
            mean = _mean(site["fn"], num_samples)
            mean = mean.mean(0) if len(sites) > 1 else mean
            means.setdefault(site["name"], []).append(mean.reshape(x.shape[0], -1))
    return {name: torch.cat(chunks) for name, chunks in means.items()}


def _mean(fn: Distribution, num_samples: int) -> torch.Tensor:
    """E[z] of ``fn``: its ``mean`` where it has one, else the average of ``num_samples`` draws (a flow);
    for a categorical y, E[one_hot(y)] = its probabilities (the representation later networks read)."""
    if isinstance(fn, Categorical):
        return fn.probs
    try:
        return fn.mean
    except NotImplementedError:
        return fn.sample((num_samples,)).mean(0)


@torch.no_grad()
def stochastic_latents(guide: Callable, *args, **kwargs) -> list[str]:
    """The latent sites of ``guide`` (run on ``args``) that posterior collapse can apply to.

    A site counts unless it is a point mass (a ``Delta``, under any ``Independent``)
    or masked out of the objective altogether: an autoencoder's code z = f(x) has
    no spread and no KL, so "collapse onto the prior" means nothing for it. An
    empty list means the collapse diagnosis (:func:`collapse_message`) does not apply.
    """
    return [
        name
        for name, site in poutine.trace(guide).get_trace(*args, **kwargs).nodes.items()
        if is_latent(site) and not isinstance(factors(site["fn"]), Delta) and _in_objective(site["mask"])
    ]


def _in_objective(mask: bool | torch.Tensor | None) -> bool:
    """Whether a site with this ``mask`` contributes anything to the objective."""
    return mask is None or (bool(mask.any()) if isinstance(mask, torch.Tensor) else bool(mask))


def unit_activity(means: torch.Tensor) -> torch.Tensor:
    """Cov_x(E_q[z_u]) per dimension u, from posterior means ``(N, D)``: a ``(D,)`` tensor."""
    return means.var(dim=0, unbiased=True)


def active_units(
    guide: Callable,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]],
    *,
    threshold: float = ACTIVE_THRESHOLD,
    **kwargs,
) -> dict[str, int]:
    """The number of active units of each latent site, ``{site: count}``."""
    return {
        name: int((unit_activity(m) > threshold).sum()) for name, m in posterior_means(guide, batches, **kwargs).items()
    }


def factors(fn: Distribution) -> Distribution:
    """The distribution under any ``Independent`` wrappers: its factors, batch shape ``(B, *event)``."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn


def _elementwise_kl(q: Distribution, p: Distribution, num_samples: int = KL_SAMPLES) -> torch.Tensor | None:
    """KL(q_u || p_u) per scalar dimension u: analytic where Pyro has it, else the mean of
    log q_u(z_u) - log p_u(z_u) over ``num_samples`` draws z ~ q (a Laplace or Student-t prior);
    ``None`` where q or p does not factorize over the dimensions (a full covariance, a flow, a mixture)."""
    q, p = factors(q), factors(p)
    if q.event_shape or p.event_shape:  # e.g. a full-covariance MultivariateNormal: no per-dimension KL
        return None
    try:
        return kl_divergence(q, p).expand(q.batch_shape)
    except NotImplementedError:
        z = q.sample((num_samples,))  # (S, B, D)
        return (q.log_prob(z) - p.log_prob(z)).mean(0).expand(q.batch_shape)


@torch.no_grad()
def kl_per_dim(
    model: Callable, guide: Callable, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]], **kwargs
) -> dict[str, torch.Tensor]:
    """Average KL(q(z_u | x) || p(z_u)) over the data, per dimension u of each latent site: ``{site: (D,)}``.

    The prior of each site comes from the model replayed against the guide, so a
    prior that depends on an upstream latent is the one conditioned on the sampled
    value. The KL is analytic (``kl_divergence`` of the factors under
    ``Independent``, e.g. Normal against Normal) and sums over dimensions to the
    site's KL. Sites without a factorized analytic KL (a full-covariance guide,
    a discrete latent) are left out of the result; they still count in
    :func:`active_units` and in the Monte-Carlo KL of ``evaluate_elbo``.
    """
    totals: dict[str, torch.Tensor] = {}
    count = 0
    for batch in batches:
        x, *inputs = batch_args(batch)
        guide_trace = poutine.trace(guide).get_trace(x, *inputs, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, *inputs, **kwargs)
        for name, site in guide_trace.nodes.items():
            if is_latent(site) and (kl := _elementwise_kl(site["fn"], model_trace.nodes[name]["fn"])) is not None:
                totals[name] = totals.get(name, 0) + kl.reshape(x.shape[0], -1).sum(0)  # (D,)
        count += x.shape[0]
    return {name: total / count for name, total in totals.items()}


def collapse_message(active: int, kl: float) -> str | None:
    """A one-line diagnosis when the posterior has collapsed onto the prior, else ``None``.

    :param active: active units of the whole latent (:func:`active_units`, summed over sites).
    :param kl: KL(q(z | x) || p(z)) of the whole latent, nats per datapoint.
    """
    if active > 0 and kl >= COLLAPSE_KL:
        return None
    return (
        f"posterior collapse: {active} active units, KL {kl:.4f} nats; the decoder ignores z "
        "(try KL annealing, --kl-anneal linear:STEPS, or a smaller beta)"
    )
