"""Posterior diagnostics: posterior means and active units per latent site.

A latent dimension u is *active* when its posterior mean moves with the data:
``Cov_x(E_q[z_u | x]) > 0.01`` (Burda et al., 2016, section 5.2). Inactive units
are ones the model has switched off, the visible sign of posterior collapse.

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyrovae.data import batch_args

ACTIVE_THRESHOLD = 0.01


@torch.no_grad()
def posterior_means(
    guide: Callable, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]], **kwargs
) -> dict[str, torch.Tensor]:
    """E_q[z | x] for every latent site of ``guide``, stacked over the data: ``{site: (N, D)}``.

    For a site whose distribution depends on a sampled upstream latent (a
    hierarchical guide), this is a one-sample estimate of its mean.
    """
    means: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        x, *inputs = batch_args(batch)
        for site in poutine.trace(guide).get_trace(x, *inputs, **kwargs).nodes.values():
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
                means.setdefault(site["name"], []).append(site["fn"].mean.reshape(x.shape[0], -1))
    return {name: torch.cat(chunks) for name, chunks in means.items()}


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
