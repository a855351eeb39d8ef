import pyro.distributions as dist
import pytest
import torch

from pyrovae.inference import elbo_terms, log_weights

from linear_gaussian import LinearGaussian


@pytest.mark.parametrize("num_particles", [1, 7])
@pytest.mark.parametrize("num_data", [None, 1000])
def test_exact_posterior_gives_log_px_for_every_particle(num_particles: int, num_data: int | None):
    lg = LinearGaussian()
    x = lg.sample_x(6)
    log_w = log_weights(lg.model, lg.exact_guide, x, num_particles=num_particles, num_data=num_data)
    assert log_w.shape == (num_particles, 6)
    expected = lg.log_px(x).expand(num_particles, 6)
    assert torch.allclose(log_w, expected, rtol=0, atol=1e-10)


def test_terms_split_log_weight_into_likelihood_and_kl_ratio():
    lg = LinearGaussian()
    x = lg.sample_x(4)
    torch.manual_seed(3)
    log_likelihood, log_ratio = elbo_terms(lg.model, lg.shifted_guide, x, num_particles=5)
    torch.manual_seed(3)
    z = (
        lg.posterior(x).loc
        + 0.5
        + lg.posterior(x).scale_tril.mul(1.3).matmul(torch.randn(5, 4, 3, 1, dtype=torch.float64)).squeeze(-1)
    )
    q = dist.MultivariateNormal(lg.posterior(x).loc + 0.5, scale_tril=1.3 * lg.posterior(x).scale_tril)
    expected_lik = dist.Normal(z @ lg.W.T + lg.b, lg.noise).to_event(1).log_prob(x)
    expected_ratio = q.log_prob(z) - dist.Normal(0.0, 1.0).expand([3]).to_event(1).log_prob(z)
    assert torch.allclose(log_likelihood, expected_lik, atol=1e-10)
    assert torch.allclose(log_ratio, expected_ratio, atol=1e-10)


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.0])
def test_beta_scales_the_latent_terms(beta: float):
    lg = LinearGaussian()
    x = lg.sample_x(4)
    torch.manual_seed(0)
    lik1, ratio1 = elbo_terms(lg.model, lg.shifted_guide, x, num_particles=3)
    torch.manual_seed(0)
    lik, ratio = elbo_terms(lg.model, lg.shifted_guide, x, num_particles=3, beta=beta, num_data=50)
    assert torch.allclose(lik, lik1, atol=1e-10)
    assert torch.allclose(ratio, beta * ratio1, atol=1e-10)


def test_site_outside_the_data_plate_is_an_error():
    import pyro

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'mu' is outside a plate at dim -1"):
        log_weights(model, guide, torch.zeros(3), num_particles=2)
