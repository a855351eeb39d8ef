"""beta-TCVAE (tc-elbo): the pairwise densities, the MWS total correlation and the objective's identities."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.inference import make_objective
from pyrovae.inference.tc_elbo import TCELBO, pairwise_log_q, total_correlation

from conftest import binary, make_vae


@pytest.mark.parametrize("particles", [(), (3,)])
def test_pairwise_log_q_is_every_datapoints_density_at_every_sample(particles: tuple):
    batch, dims = 4, 3
    loc, scale = torch.randn(*particles, batch, dims), torch.rand(*particles, batch, dims) + 0.5
    q = dist.Normal(loc, scale).to_event(1)
    z = q.sample()
    pairs = pairwise_log_q(q, z)  # (B_i, *particles, B_j, D)
    assert pairs.shape == (batch, *particles, batch, dims)
    for i in range(batch):
        for j in range(batch):
            expected = torch.distributions.Normal(loc[..., j, :], scale[..., j, :]).log_prob(z[..., i, :])
            torch.testing.assert_close(pairs[i, ..., j, :], expected)


def test_full_batch_mws_is_the_aggregate_posterior_exactly():
    """With the whole data set in the batch (B = N), log q(z) is the mixture's log-density, and the TC is
    log q(z) - sum_d log q(z_d) of that mixture and its marginals."""
    n, dims = 5, 2
    loc, scale = torch.randn(n, dims), torch.rand(n, dims) + 0.3
    q = dist.Normal(loc, scale).to_event(1)
    z = q.sample()
    mixture = dist.MixtureSameFamily(dist.Categorical(torch.ones(n)), dist.Normal(loc, scale).to_event(1))
    marginals = [dist.MixtureSameFamily(dist.Categorical(torch.ones(n)), dist.Normal(loc[:, d], scale[:, d]))
                 for d in range(dims)]  # fmt: skip
    expected = mixture.log_prob(z) - sum(m.log_prob(z[:, d]) for d, m in enumerate(marginals))
    torch.testing.assert_close(total_correlation(pairwise_log_q(q, z)), expected)


@pytest.mark.parametrize("batch", [1, 6])
def test_a_posterior_that_ignores_x_has_no_total_correlation(batch: int):
    """q(z | x_j) the same factorized Normal for every j: q(z) factorizes, and so does every estimate of it."""
    q = dist.Normal(torch.zeros(batch, 4), torch.ones(batch, 4)).to_event(1)
    tc = total_correlation(pairwise_log_q(q, q.sample()))
    torch.testing.assert_close(tc, torch.zeros(batch), atol=1e-5, rtol=0)


def test_correlated_codes_have_a_positive_total_correlation():
    """Posteriors narrow around points of a line z_1 = z_2: the aggregate is far from its marginals' product."""
    t = torch.linspace(-3, 3, 200)
    q = dist.Normal(torch.stack([t, t], -1), 0.05).to_event(1)
    assert total_correlation(pairwise_log_q(q, q.sample())).mean() > 2.0


@pytest.mark.parametrize("beta", [1.0, 0.5, 4.0])
@pytest.mark.parametrize("particles", [1, 3])
def test_tc_weight_equal_to_beta_is_the_beta_weighted_elbo(beta: float, particles: int):
    model, guide = make_vae()
    x = binary(5)
    torch.manual_seed(1)
    tc = TCELBO(beta, num_particles=particles).differentiable_loss(model, guide, x, beta=beta, num_data=50)
    torch.manual_seed(1)
    elbo = make_objective("elbo", num_particles=particles).differentiable_loss(model, guide, x, beta=beta, num_data=50)
    assert tc.item() == pytest.approx(elbo.item(), rel=1e-5)


@pytest.mark.parametrize("beta", [1.0, 0.0, 2.0])
def test_the_penalty_is_tc_weight_minus_beta_times_the_estimate(beta: float):
    model, guide = make_vae()
    x = binary(5)
    torch.manual_seed(1)
    tc6 = TCELBO(6.0).differentiable_loss(model, guide, x, beta=beta, num_data=50)
    torch.manual_seed(1)
    elbo = make_objective("elbo").differentiable_loss(model, guide, x, beta=beta, num_data=50)
    torch.manual_seed(1)
    q = guide.posterior(x)
    estimate = total_correlation(pairwise_log_q(q, q.rsample()))
    assert tc6.item() == pytest.approx(elbo.item() + 10 * (6 - beta) * estimate.sum().item(), rel=1e-5)


def test_the_penalty_has_a_gradient_through_the_encoder():
    model, guide = make_vae()
    x = binary(8)
    loss = TCELBO(6.0).differentiable_loss(model, guide, x) - TCELBO(1.0).differentiable_loss(model, guide, x)
    grads = torch.autograd.grad(loss, list(guide.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_dependent_posterior_is_refused():
    model, _ = make_vae(latent_dim=2)

    def full_covariance_guide(x, **_):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(torch.zeros(x.shape[0], 2), torch.eye(2)))

    with pytest.raises(NotImplementedError, match="factorize over its dimensions"):
        TCELBO().differentiable_loss(model, full_covariance_guide, binary(3))


def test_two_latent_sites_are_refused():
    def model(x, **_):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(0.0, 1.0).expand([x.shape[0], 1]).to_event(1))
            pyro.sample("b", dist.Normal(0.0, 1.0).expand([x.shape[0], 1]).to_event(1))
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0], x.shape[1]]).to_event(1), obs=x)

    with pytest.raises(NotImplementedError, match="one latent site"):
        TCELBO().differentiable_loss(model, model, binary(3))


def test_options_are_checked_by_name():
    with pytest.raises(ValueError, match="tc_weight"):
        make_objective("tc-elbo", tc_weight=float("nan"))
    assert isinstance(make_objective("tc-elbo", tc_weight=4.0), TCELBO)
