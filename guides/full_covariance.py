"""The full-covariance Gaussian guide q(z | x) = N(mu(x), L(x) L(x)^T).

The encoder outputs mu, a raw diagonal and the D(D-1)/2 entries below it; the
Cholesky factor is ``L = L_mask * L' / D + diag(sigma)`` with ``L_mask`` the strictly
lower triangle and ``sigma = softplus(raw) + 1e-4 > 0``, so ``L L^T`` is positive
definite by construction and ``z = mu + L eps`` is reparameterized. The entries below
the diagonal are divided by D so that, under Adam, a row of L moves no faster than
its diagonal entry (see :class:`FullCovarianceEncoder`).

For the analytic-KL objective (``mf-elbo``) this module registers
KL(MultivariateNormal || Independent(Normal, 1)) with Pyro's KL registry, which
has no such entry: a standard (or any diagonal) Normal prior then needs no MVN
rewrite. Do not train this guide with ``JitTrace_ELBO``: Pyro issue #3444 reports
wrong gradients through ``scale_tril`` under the JIT; pyrovae's objectives are not jitted.

References: D. P. Kingma, M. Welling, "An Introduction to Variational Autoencoders", Foundations and
Trends in Machine Learning 12(4), 2019, section 2.5 (full-covariance Gaussian encoder).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, register_kl

from pyrovae.graph import Node
from pyrovae.guides.amortized import AmortizedGuide
from pyrovae.nets import GaussianEncoder, broadcast_cat, positive_scale


def full_covariance_outputs(latent_dim: int) -> int:
    """Encoder outputs per datapoint: D means, D raw diagonal entries, D(D-1)/2 below the diagonal."""
    return 2 * latent_dim + latent_dim * (latent_dim - 1) // 2


class FullCovarianceEncoder(GaussianEncoder):
    """inputs -> (loc ``(..., D)``, scale_tril ``(..., D, D)``), L lower triangular with a positive diagonal.

    Takes :class:`~pyrovae.nets.GaussianEncoder`'s arguments; its network (the
    MLP, or ``net``) has :func:`full_covariance_outputs` outputs.
    """

    num_outputs = staticmethod(full_covariance_outputs)

    def __init__(self, in_dim: int, latent_dim: int, *args, **kwargs) -> None:
        super().__init__(in_dim, latent_dim, *args, **kwargs)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)  # the D(D-1)/2 entries below the diagonal
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        # The entries below the diagonal are the network's outputs divided by D. Adam steps every weight
        # by about lr whatever the size of its gradient, and the gradients of the D(D-1)/2 entries below
        # the diagonal, (g_i - z_i) eps_j, are mostly noise; row i of L sums i of them, so unscaled they
        # outpace the diagonal and add correlated noise to z that grows with D (D = 50 on binarized
        # MNIST, 5 epochs: test ELBO -136 against -110 for the diagonal guide; -114 divided by D).
        # Divided by D, the entries of a row together move no faster than its diagonal entry, for any D.
        self.off_diagonal_scale = 1.0 / latent_dim

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.latent_dim
        loc, raw_diag, below = self.net(broadcast_cat(inputs)).split([d, d, d * (d - 1) // 2], dim=-1)
        scale_tril = torch.diag_embed(positive_scale(raw_diag))  # (..., D, D), a fresh tensor
        scale_tril[..., self.rows, self.cols] = below * self.off_diagonal_scale  # the strictly lower part
        return loc, scale_tril


class FullCovarianceNormal(nn.Module):
    """The conditional N(mu(parents), L L^T) as a ``MultivariateNormal`` (event shape ``(D,)``)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, *parents: torch.Tensor) -> dist.Distribution:
        loc, scale_tril = self.encoder(*parents)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)


class FullCovarianceGuide(AmortizedGuide):
    """q(z | x) = N(mu(x), L(x) L(x)^T) over the latent site ``"z"``.

    :param encoder: a :class:`FullCovarianceEncoder` (or any net giving ``(loc, scale_tril)``).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__([Node("z", ("x",), "encoder")], {"encoder": FullCovarianceNormal(encoder)})

    def posterior(self, x: torch.Tensor) -> dist.Distribution:
        """q(z | x): batch shape ``(B,)``, event shape ``(latent_dim,)``."""
        return self.conditionals["encoder"](x)


@register_kl(MultivariateNormal, Independent)
def kl_mvn_diagonal_normal(q: MultivariateNormal, p: Independent) -> torch.Tensor:
    """KL(N(m, L L^T) || N(mu, diag s^2)) in closed form:

    ``0.5 * [sum_ij L_ij^2 / s_i^2 + sum_i (m_i - mu_i)^2 / s_i^2 - D] + sum_i log s_i - sum_i log L_ii``.
    """
    if not (isinstance(p.base_dist, Normal) and p.reinterpreted_batch_ndims == 1):
        raise NotImplementedError
    loc, scale = p.base_dist.loc, p.base_dist.scale  # (..., D) each
    trace = (q.scale_tril / scale.unsqueeze(-1)).pow(2).sum((-2, -1))  # tr(S_p^-1 S_q)
    mahalanobis = ((q.loc - loc) / scale).pow(2).sum(-1)
    log_det_ratio = scale.log().sum(-1) - q.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + mahalanobis - q.event_shape[0]) + log_det_ratio
