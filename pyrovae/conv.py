"""Convolutional bodies for image data, drop-in replacements for the MLPs of :mod:`pyrovae.nets`.

Both keep the flat interface every pyrovae network has, ``(..., in_dim) ->
(..., out_dim)``, so that models and guides never know which architecture they
hold. The image (flattened, ``C*H*W``) comes first in an encoder's input, any
conditioning after it; two stride-2 convolutions halve the sides twice, so H and
W must be multiples of 4 (28 x 28 MNIST becomes 64 feature maps of 7 x 7).

References: A. Radford, L. Metz, S. Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks" (DCGAN), ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrovae.nets import ACTIVATIONS, mlp

CHANNELS = (32, 64)  # feature maps after the first and second stride-2 convolution


def _check_image(image_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or image_shape[1] % 4 or image_shape[2] % 4:
        raise ValueError(
            f"--arch conv needs images of shape (C, H, W) with H and W multiples of 4, got {tuple(image_shape)}; "
            "use --arch mlp"
        )
    c, h, w = image_shape
    return c, h, w


class ConvEncoderNet(nn.Module):
    """``[image, extra] (..., C*H*W + extra_dim) -> (..., out_dim)``: two convolutions, then an MLP.

    :param image_shape: ``(C, H, W)`` of one datapoint.
    :param extra_dim: size of the conditioning appended to the image (0 for none).
    :param out_dim: size of the output (e.g. ``2 * latent_dim`` for a diagonal Normal).
    :param hidden: widths of the MLP after the convolutions.
    :param activation: one of :data:`pyrovae.nets.ACTIVATIONS`.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        extra_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.image_shape = _check_image(image_shape)
        c, h, w = self.image_shape
        act = ACTIVATIONS[activation]
        self.conv = nn.Sequential(
            nn.Conv2d(c, CHANNELS[0], 4, stride=2, padding=1),
            act(),
            nn.Conv2d(CHANNELS[0], CHANNELS[1], 4, stride=2, padding=1),
            act(),
            nn.Flatten(),
        )
        self.head = mlp(CHANNELS[1] * (h // 4) * (w // 4) + extra_dim, hidden, out_dim, activation)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch, pixels = inputs.shape[:-1], self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        flat = inputs.reshape(-1, inputs.shape[-1])  # (N, C*H*W + extra): convolutions take one batch dim
        features = self.conv(flat[:, :pixels].reshape(-1, *self.image_shape))  # (N, 64 * H/4 * W/4)
        return self.head(torch.cat([features, flat[:, pixels:]], dim=-1)).reshape(*batch, -1)


class ConvDecoderNet(nn.Module):
    """``(..., in_dim) -> (..., k*C*H*W)``: an MLP, then two transposed convolutions.

    The output holds ``k`` parameter maps per channel, flattened channel-major, so
    that its first ``C*H*W`` entries are the first parameter of every pixel.

    :param in_dim: size of the input (z and any conditioning).
    :param image_shape: ``(C, H, W)`` of one datapoint.
    :param params_per_pixel: ``k``, parameters of the likelihood per pixel.
    :param hidden: widths of the MLP before the convolutions.
    :param activation: one of :data:`pyrovae.nets.ACTIVATIONS`.
    """

    def __init__(
        self,
        in_dim: int,
        image_shape: Sequence[int],
        params_per_pixel: int = 1,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _check_image(image_shape)
        act = ACTIVATIONS[activation]
        self.grid = (CHANNELS[1], h // 4, w // 4)
        self.fc = nn.Sequential(mlp(in_dim, hidden, CHANNELS[1] * (h // 4) * (w // 4), activation), act())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(CHANNELS[1], CHANNELS[0], 4, stride=2, padding=1),
            act(),
            nn.ConvTranspose2d(CHANNELS[0], params_per_pixel * c, 4, stride=2, padding=1),
            nn.Flatten(),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs.shape[:-1]
        maps = self.fc(inputs.reshape(-1, inputs.shape[-1])).reshape(-1, *self.grid)  # (N, 64, H/4, W/4)
        return self.deconv(maps).reshape(*batch, -1)
