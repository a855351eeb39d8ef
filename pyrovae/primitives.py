"""The two Pyro idioms every pyrovae model and guide share.

``data_plate`` is the conditionally independent plate over datapoints (always at
dim -1, so that particle plates can sit at dim -2), and ``kl_scale`` applies the
beta of beta-VAE to a latent site in both model and guide. A model that uses
neither (a plain ``pyro.plate("data", B, dim=-1)``) gets the same site scales and
plate frames from :func:`pyrovae.inference.handlers.with_scales`, applied from outside.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import pyro
import torch
from pyro import poutine


def data_plate(batch_size: int, num_data: int | None, device: torch.device) -> pyro.plate:
    """The plate ``"data"`` over a minibatch of ``batch_size`` datapoints.

    When ``num_data`` (the full data-set size N) is given, the plate is a
    subsample of size B out of N, so Pyro scales every site inside it by N / B and
    the objective is an unbiased estimate of the full-data objective. The
    subsample indices are ``arange(B)``: the caller has already drawn the
    minibatch, and this avoids ``randperm(N)`` on every step.
    """
    if num_data is None:
        return pyro.plate("data", batch_size, dim=-1, device=device)
    if num_data < batch_size:
        raise ValueError(f"num_data={num_data} is smaller than the batch ({batch_size} rows)")
    subsample = torch.arange(batch_size, device=device)
    return pyro.plate("data", num_data, subsample=subsample, dim=-1, device=device)


def kl_scale(beta: float | torch.Tensor) -> AbstractContextManager:
    """Scale the latent sites under it by ``beta`` (model and guide alike).

    Under ``Trace_ELBO`` the ELBO becomes ``E_q[log p(x|z)] - beta * KL(q || p)``.
    Pyro rejects a scale of 0, so ``beta == 0`` masks the sites instead, which
    removes the KL term exactly. A tensor ``beta`` (the input of a traced step,
    :mod:`pyrovae.inference.compiled`, which keeps 0 and 1 as floats) is a scale.
    """
    if isinstance(beta, torch.Tensor):
        return poutine.scale(scale=beta)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if beta == 0:
        return poutine.mask(mask=False)
    if beta == 1:
        return nullcontext()
    return poutine.scale(scale=beta)


def batch_args(batch: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A batch as a model's positional arguments: ``(x,)``, or ``(x, y)`` for a labelled batch."""
    return batch if isinstance(batch, tuple) else (batch,)
