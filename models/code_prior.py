"""A learned prior over a VQ-VAE's grid of code indices: a small PixelCNN (van den Oord et al., 2016).

    p(k) = prod_p p(k_p | k_<p),   positions in raster order of the (H/4) x (W/4) grid

Masked convolutions make the logits at position p read the indices before p alone (mask A in the first
layer hides p itself, mask B in the others lets each position see its own features), so one pass gives
every conditional of a grid (the density) and sampling takes P passes. Used as the ``logits_net`` of
:class:`~pyrovae.models.codebook.CodebookPrior`: the second stage of a VQ-VAE, trained on the codes of a
frozen first stage, turns log p(z_q) from -P log K into a learned term of the bound.

References: A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016;
A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees the positions above its centre and left of it on the centre row, and the centre
    itself for mask ``"B"``, not for mask ``"A"``."""

    def __init__(self, mask: str, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be A or B, got {mask!r}")
        centre = kernel_size // 2
        keep = torch.ones(kernel_size, kernel_size)
        keep[centre, centre + (mask == "B") :] = 0  # the centre row from the centre (A) or after it (B)
        keep[centre + 1 :] = 0  # the rows below
        self.register_buffer("mask", keep.expand_as(self.weight).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class CodePixelCNN(nn.Module):
    """``(..., P)`` code indices of a ``grid`` -> ``(..., P, K)`` logits, position p's from the indices before p.

    :param codebook_size: K.
    :param grid: ``(h, w)``, P = h w.
    :param channels: feature maps of every layer.
    :param layers: masked 3 x 3 layers after the first (7 x 7, mask A).
    """

    def __init__(self, codebook_size: int, grid: tuple[int, int], *, channels: int = 64, layers: int = 5) -> None:
        super().__init__()
        self.codebook_size, self.grid = codebook_size, tuple(grid)
        self.embed = nn.Embedding(codebook_size, channels)
        body: list[nn.Module] = [MaskedConv2d("A", channels, channels, 7)]
        for _ in range(layers):
            body += [nn.ReLU(), MaskedConv2d("B", channels, channels, 3)]
        self.body = nn.Sequential(*body, nn.ReLU(), nn.Conv2d(channels, codebook_size, 1))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        batch, (h, w) = indices.shape[:-1], self.grid
        maps = self.embed(indices.reshape(-1, h, w)).permute(0, 3, 1, 2)  # (N, C, h, w)
        logits = self.body(maps)  # (N, K, h, w)
        return logits.flatten(2).transpose(1, 2).reshape(*batch, h * w, self.codebook_size)
