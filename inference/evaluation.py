"""The true ELBO (beta = 1, no subsample scaling) of a model/guide pair on a data set."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask

from pyrovae.inference.log_weights import data_plate_name, plate_frame, sample_sites, site_log_prob, vectorized
from pyrovae.primitives import batch_args


@torch.no_grad()
def evaluate_elbo(
    model: Callable, guide: Callable, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]], **kwargs
) -> dict[str, float]:
    """Monte-Carlo ELBO in nats per datapoint, one sample of z per datapoint.

    A batch is x, or a tuple ``(x, y)`` passed to model and guide as ``fn(x, y)``.

    Whatever beta the model was trained with, this is the ELBO
    ``E_q[log p(x | z)] - KL(q(z | x) || p(z))`` with both terms reported.
    ``kwargs`` go to the model and guide; ``beta`` and ``num_data`` are not allowed.

    Sites outside the data plate (global latents g, observed global factors) count
    once for the whole data set, as in its ELBO: with n datapoints, the result is
    ``(sum_b E_q[log p(x_b | z_b, g) - log q(z_b | x_b) / p(z_b)] - KL(q(g) || p(g))) / n``,
    the global terms averaged over the batches' draws (weighted by batch size).

    :returns: ``{"elbo", "reconstruction", "kl"}``, averages over all datapoints.
    """
    if {"beta", "num_data"} & kwargs.keys():
        raise ValueError("evaluate_elbo computes the unscaled ELBO; do not pass beta or num_data")
    local, shared, count = 0.0, 0.0, 0  # (log-likelihood, log-ratio) sums: of local sites; of global ones x batch size
    for batch in batches:
        x, *inputs = batch_args(batch)
        batch_local, batch_shared = _elbo_parts(model, guide, x, *inputs, **kwargs)  # (2,) each
        local = local + batch_local  # stays on the device
        shared = shared + x.shape[0] * batch_shared
        count += x.shape[0]
    if count == 0:
        raise ValueError("evaluate_elbo needs at least one batch")
    (likelihood, ratio), (shared_likelihood, shared_ratio) = (
        torch.as_tensor(local).tolist(),
        torch.as_tensor(shared).tolist(),
    )
    reconstruction = (likelihood + shared_likelihood / count) / count
    kl = (ratio + shared_ratio / count) / count
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}


def _elbo_parts(model: Callable, guide: Callable, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw z ~ q of ``log p(x | z)`` and ``log q(z | x) - log p(z)``, each summed over the data
    plate's sites and datapoints (the first tensor) and over the sites outside it (the second; zeros
    without global sites): two ``(2,)`` tensors.

    The traces are those of :func:`~pyrovae.inference.log_weights.elbo_terms` (one
    particle at dim -2), without its refusal of global sites.
    """
    guide_trace = poutine.trace(vectorized(guide, 1)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(vectorized(model, 1), trace=guide_trace)).get_trace(*args, **kwargs)
    plate = data_plate_name(model_trace)
    model_sites = sample_sites(model_trace)
    observed = [s for s in model_sites if s["is_observed"]]
    if not observed:
        raise ValueError("the model has no observed sample site")
    terms = {(local, kind): [] for local in (True, False) for kind in ("likelihood", "ratio")}
    for site in model_sites:
        kind, sign = ("likelihood", 1) if site["is_observed"] else ("ratio", -1)  # ratio: log q - log p
        terms[_in_plate(site, plate), kind].append(sign * _log_prob(site, plate).sum())
    for site in sample_sites(guide_trace):
        if not site["is_observed"]:
            terms[_in_plate(site, plate), "ratio"].append(_log_prob(site, plate).sum())
    zero = torch.zeros((), device=observed[0]["value"].device)  # promoted to the log-densities' dtype
    return tuple(
        torch.stack([sum(terms[local, kind], zero) for kind in ("likelihood", "ratio")]) for local in (True, False)
    )


def _in_plate(site: dict, plate: str | None) -> bool:
    return plate is not None and getattr(plate_frame(site), "name", None) == plate


def _log_prob(site: dict, plate: str | None) -> torch.Tensor:
    """The site's log-density times its scale and mask; in the data plate, without the plate's N / B."""
    if _in_plate(site, plate):
        return site_log_prob(site)  # (1, B)
    return scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
