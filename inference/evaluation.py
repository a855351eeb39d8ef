"""The true ELBO (beta = 1, no subsample scaling) of a model/guide pair on a data set."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from pyrovae.data import batch_args
from pyrovae.inference.log_weights import elbo_terms


@torch.no_grad()
def evaluate_elbo(
    model: Callable, guide: Callable, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]], **kwargs
) -> dict[str, float]:
    """Monte-Carlo ELBO in nats per datapoint, one sample of z per datapoint.

    A batch is x, or a tuple ``(x, y)`` passed to model and guide as ``fn(x, y)``.

    Whatever beta the model was trained with, this is the ELBO
    ``E_q[log p(x | z)] - KL(q(z | x) || p(z))`` with both terms reported.
    ``kwargs`` go to the model and guide; ``beta`` and ``num_data`` are not allowed.

    :returns: ``{"elbo", "reconstruction", "kl"}``, averages over all datapoints.
    """
    if {"beta", "num_data"} & kwargs.keys():
        raise ValueError("evaluate_elbo computes the unscaled ELBO; do not pass beta or num_data")
    total_likelihood, total_ratio, count = 0.0, 0.0, 0
    for batch in batches:
        x, *inputs = batch_args(batch)
        log_likelihood, log_ratio = elbo_terms(model, guide, x, *inputs, **kwargs)  # (1, B) each
        total_likelihood = total_likelihood + log_likelihood.sum()  # stays on the device
        total_ratio = total_ratio + log_ratio.sum()
        count += x.shape[0]
    reconstruction, kl = float(total_likelihood) / count, float(total_ratio) / count
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}
