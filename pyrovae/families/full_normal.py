"""The full-covariance Normal guide N(mu, L L^T) (see :mod:`pyrovae.guides.full_covariance`).

Not factorized, so it has no KL per dimension; its KL against a diagonal Normal
prior is in closed form (registered with Pyro's KL registry there).

References: D. P. Kingma, M. Welling, "An Introduction to Variational Autoencoders", Foundations and
Trends in Machine Learning 12(4), 2019, section 2.5.
"""

from __future__ import annotations

from torch import nn

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family
from pyrovae.guides.full_covariance import FullCovarianceEncoder, FullCovarianceNormal, full_covariance_outputs


@register
class FullCovariance(Family):
    """N(mu(parents), L(parents) L(parents)^T), L lower triangular with a positive diagonal."""

    name = "full"
    roles = frozenset({"guide"})
    capabilities = Capabilities(factorized=False, analytic_kl=frozenset({"normal"}))

    def num_outputs(self, size: int) -> int:
        return full_covariance_outputs(size)

    def conditional(self, net: nn.Module, in_dim: int, size: int) -> nn.Module:
        return FullCovarianceNormal(FullCovarianceEncoder(in_dim, size, net=net))
