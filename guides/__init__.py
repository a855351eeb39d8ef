"""Amortized guides q(z | x) as Pyro guide functions, and the families a spec's latents can use."""

from torch import nn

from pyrovae.graph import DiagonalNormal
from pyrovae.guides.amortized import AmortizedGuide
from pyrovae.guides.delta import Corruption, PointMass
from pyrovae.guides.full_covariance import (
    FullCovarianceEncoder,
    FullCovarianceGuide,
    FullCovarianceNormal,
    full_covariance_outputs,
)
from pyrovae.guides.normal import NormalGuide
from pyrovae.nets import GaussianEncoder

GUIDES = ("diag", "full", "delta")  # diagonal Normal, full-covariance Normal, point mass (autoencoders)


def guide_outputs(family: str, size: int) -> int:
    """How many outputs the network of a ``family`` conditional over a ``size``-vector needs."""
    if family == "full":
        return full_covariance_outputs(size)
    return size if family == "delta" else GaussianEncoder.num_outputs(size)  # a point, or (loc, scale)


def conditional(family: str, net: nn.Module, in_dim: int, size: int, *, corruption: str = "none") -> nn.Module:
    """The conditional of ``family`` over a ``size``-vector around a network ``(..., in_dim) -> guide_outputs``."""
    if family == "diag":
        return DiagonalNormal(GaussianEncoder(in_dim, size, net=net))
    if family == "full":
        return FullCovarianceNormal(FullCovarianceEncoder(in_dim, size, net=net))
    if family == "delta":
        return PointMass(net, Corruption(corruption))
    raise ValueError(f"unknown guide {family!r}; choose from {', '.join(GUIDES)}")


__all__ = [
    "GUIDES",
    "AmortizedGuide",
    "FullCovarianceGuide",
    "NormalGuide",
    "conditional",
    "guide_outputs",
]
