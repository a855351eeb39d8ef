import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions.kl import kl_divergence

from pyrovae.guides import FullCovarianceGuide
from pyrovae.guides.full_covariance import FullCovarianceEncoder
from pyrovae.inference import make_objective
from pyrovae.models import VAE
from pyrovae.nets import Decoder


def make_guide(data_dim: int = 10, latent_dim: int = 4) -> FullCovarianceGuide:
    encoder = FullCovarianceEncoder(data_dim, latent_dim, (16,))
    with torch.no_grad():  # large off-diagonal entries, so that the test sees real correlations
        encoder.net[-1].weight.mul_(5.0)
        encoder.net[-1].weight[2 * latent_dim :].mul_(latent_dim)  # undo the encoder's 1/D below the diagonal
    return FullCovarianceGuide(encoder)


def test_cholesky_factor_is_lower_triangular_and_covariance_positive_definite():
    q = make_guide().posterior(torch.rand(7, 10))
    scale_tril = q.scale_tril
    assert scale_tril.shape == (7, 4, 4) and q.batch_shape == (7,) and q.event_shape == (4,)
    assert torch.equal(scale_tril, scale_tril.tril()) and torch.all(scale_tril.diagonal(dim1=-2, dim2=-1) > 0)
    assert scale_tril.tril(-1).abs().max() > 0.5  # not diagonal
    assert torch.all(torch.linalg.eigvalsh(q.covariance_matrix) > 0)


@pytest.mark.parametrize("prior", ["standard", "diagonal"])
def test_analytic_kl_equals_monte_carlo_and_mvn_kl(prior: str):
    q = make_guide().posterior(torch.rand(3, 10))
    loc, scale = (0.0, 1.0) if prior == "standard" else (torch.randn(3, 4), torch.rand(3, 4) + 0.5)
    p = dist.Normal(torch.as_tensor(loc).expand(3, 4), torch.as_tensor(scale).expand(3, 4)).to_event(1)
    analytic = kl_divergence(q, p)
    p_mvn = dist.MultivariateNormal(p.base_dist.loc, scale_tril=torch.diag_embed(p.base_dist.scale))
    assert torch.allclose(analytic, kl_divergence(q, p_mvn), rtol=1e-5)
    z = q.sample((200_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    se = log_ratio.std(0) / 200_000**0.5
    assert torch.all((log_ratio.mean(0) - analytic).abs() < 4 * se)


def test_mf_elbo_uses_the_analytic_kl():
    guide = make_guide()
    model = VAE(Decoder(4, 10, (8,)), 4)
    x = torch.bernoulli(torch.full((5, 10), 0.4))
    torch.manual_seed(1)
    loss = make_objective("mf-elbo").differentiable_loss(model, guide, x)
    torch.manual_seed(1)
    q = guide.posterior(x)
    expected = model.likelihood(q.rsample()).log_prob(x).sum() - kl_divergence(q, model.prior(5)).sum()
    assert loss.item() == pytest.approx(-expected.item(), rel=1e-6)


def test_guide_site_is_in_the_data_plate():
    site = poutine.trace(make_guide()).get_trace(torch.rand(6, 10)).nodes["z"]
    assert site["fn"].batch_shape == (6,) and site["fn"].has_rsample
    assert [(f.name, f.dim) for f in site["cond_indep_stack"]] == [("data", -1)]


@pytest.mark.parametrize("latent_dim", [5, 50])
def test_the_entries_below_the_diagonal_start_small_whatever_the_latent_size(latent_dim: int):
    """Scaled by 1/D, the correlated part of each row of L starts far below its diagonal entry."""
    encoder = FullCovarianceEncoder(784, latent_dim, (400, 400))
    _, scale_tril = encoder(torch.bernoulli(torch.full((100, 784), 0.2)))
    below = scale_tril.tril(-1).norm(dim=-1)  # (100, D): the norm of each row below the diagonal
    assert below.max() < 0.1 * scale_tril.diagonal(dim1=-2, dim2=-1).min()
