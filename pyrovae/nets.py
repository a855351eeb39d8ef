"""Neural networks shared by every model and guide.

Nothing here knows about images: sizes come from the data (``x.shape[-1]``),
never from a hard-coded 784.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    """``in_dim -> hidden[0] -> ... -> hidden[-1] -> out_dim``, activation between layers."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def broadcast_cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate on the last dim after broadcasting the leading (batch) dims.

    A latent inside a particle plate has shape ``(k, B, D)`` while x or a label is
    ``(B, D')``; both become ``(k, B, D + D')``.
    """
    if len(tensors) == 1:
        return tensors[0]
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch, t.shape[-1]) for t in tensors], dim=-1)


def positive_scale(raw: torch.Tensor, min_scale: float = 1e-4) -> torch.Tensor:
    """Map an unconstrained tensor to a positive scale.

    ``softplus`` grows linearly instead of exponentially, so a large raw output
    cannot overflow the way ``exp(0.5 * logvar)`` does; ``min_scale`` keeps the
    log-density finite when the raw output is very negative.
    """
    return F.softplus(raw) + min_scale


class GaussianEncoder(nn.Module):
    """inputs -> (loc, scale) of a diagonal Normal over a ``latent_dim``-vector.

    The inputs (x, and any conditioning such as a one-hot label or an upstream
    latent) are concatenated by :func:`broadcast_cat`.

    :param in_dim: size of the concatenated inputs.
    :param latent_dim: size of z.
    :param hidden: widths of the hidden layers.
    :param activation: one of :data:`ACTIVATIONS`.
    :param net: a network ``(..., in_dim) -> (..., 2 * latent_dim)`` to use instead
        of the MLP (e.g. :class:`pyrovae.conv.ConvEncoderNet`).
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (400, 400),
        activation: str = "relu",
        *,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(in_dim, hidden, self.num_outputs(latent_dim), activation) if net is None else net

    @staticmethod
    def num_outputs(latent_dim: int) -> int:
        """Network outputs per datapoint: a mean and a raw scale per latent dimension."""
        return 2 * latent_dim

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)``, each ``(..., latent_dim)``, from the concatenated inputs."""
        loc, raw_scale = self.net(broadcast_cat(inputs)).split(self.latent_dim, dim=-1)  # (..., D) each
        return loc, positive_scale(raw_scale)


class Decoder(nn.Module):
    """inputs -> the parameters of p(x | inputs): an ``out_dim``-vector (logits for Bernoulli).

    :param latent_dim: size of the concatenated inputs (z and any conditioning).
    :param out_dim: size of the likelihood's parameters (the data size, twice it
        for a learned-scale Gaussian). :func:`make_net` gives the
        convolutional alternative.
    :param hidden: widths of the hidden layers.
    :param activation: one of :data:`ACTIVATIONS`.
    """

    def __init__(
        self, latent_dim: int, out_dim: int, hidden: Sequence[int] = (400, 400), activation: str = "relu"
    ) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden, out_dim, activation)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters ``(..., out_dim)`` from the concatenated inputs."""
        return self.net(broadcast_cat(inputs))


def make_net(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int],
    activation: str = "relu",
    *,
    image_shape: Sequence[int] | None = None,
    reads_image: bool = False,
    writes_image: bool = False,
) -> nn.Module:
    """A network ``(..., in_dim) -> (..., out_dim)``: convolutional where it reads or writes an image
    (``image_shape`` given), an MLP otherwise. A writer's ``out_dim`` is a multiple of the image size."""
    from pyrovae.conv import ConvDecoderNet, ConvEncoderNet  # conv's bodies are built on this module's mlp

    if image_shape is not None and reads_image:
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        return ConvEncoderNet(image_shape, in_dim - pixels, out_dim, hidden, activation)
    if image_shape is not None and writes_image:
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        return ConvDecoderNet(in_dim, image_shape, out_dim // pixels, hidden, activation)
    return mlp(in_dim, hidden, out_dim, activation)
