"""Figures of a trained model: prior samples and reconstructions, as PNG grids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from pyro import poutine
from torchvision.utils import make_grid, save_image

FIGURE_SEED = 0  # figures of one run are comparable across epochs and resumptions


@torch.no_grad()
def decoded_mean(model: Callable, *args, guide: Callable | None = None, **kwargs) -> torch.Tensor:
    """E[x | z] at the model's observed site ``"x"``, with z from the prior or from ``guide``.

    Works for any Pyro model that names its data site ``"x"``: the model is run
    (replayed against the guide when one is given) and the mean of the
    distribution at ``"x"`` is returned, e.g. Bernoulli probabilities.
    """
    if guide is not None:
        model = poutine.replay(model, trace=poutine.trace(guide).get_trace(*args, **kwargs))
    return poutine.trace(model).get_trace(*args, **kwargs).nodes["x"]["fn"].mean


def save_grid(images: torch.Tensor, image_shape: tuple[int, ...], path: str | Path, nrow: int = 8) -> None:
    """Save rows of flat images ``(N, C*H*W)`` as one PNG grid."""
    save_image(make_grid(images.reshape(-1, *image_shape).cpu(), nrow=nrow, pad_value=1.0), path)


def save_samples(
    model: Callable,
    image_shape: tuple[int, ...],
    path: str | Path,
    n: int = 64,
    *,
    inputs: tuple[torch.Tensor, ...] = (),
    **kwargs,
) -> None:
    """Decode ``n`` prior samples (the decoder's mean image, not a binary draw).

    :param inputs: a conditional model's inputs (e.g. labels ``(n,)``), one per sample.
    """
    with torch.random.fork_rng():
        torch.manual_seed(FIGURE_SEED)
        save_grid(decoded_mean(model, None, *inputs, batch_size=n, **kwargs), image_shape, path)


def save_reconstructions(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    image_shape: tuple[int, ...],
    path: str | Path,
    *,
    inputs: tuple[torch.Tensor, ...] = (),
    **kwargs,
) -> None:
    """Inputs ``x`` (rows of 8) interleaved with their reconstructions, row by row.

    :param inputs: a conditional model's inputs for the rows of ``x`` (e.g. their labels).
    """
    with torch.random.fork_rng():
        torch.manual_seed(FIGURE_SEED)
        recon = decoded_mean(model, x, *inputs, guide=guide, **kwargs)
    pairs = torch.stack([x.reshape(-1, 8, x.shape[-1]), recon.reshape(-1, 8, x.shape[-1])], dim=1)
    save_grid(pairs.reshape(-1, x.shape[-1]), image_shape, path)
