import math

import pyro.distributions as dist
import pytest
import torch

from pyrovae.graph import StandardNormal
from pyrovae.models import VAE
from pyrovae.models.likelihoods import LIKELIHOODS, Likelihood
from pyrovae.nets import Decoder


def test_each_likelihood_is_its_formula():
    h = torch.randn(3, 6)
    x = torch.rand(3, 6)
    xb = torch.bernoulli(x)
    p = torch.sigmoid(h)
    expected_bernoulli = (xb * p.log() + (1 - xb) * (1 - p).log()).sum(-1)
    assert torch.allclose(Likelihood("bernoulli")(h).log_prob(xb), expected_bernoulli, atol=1e-5)
    gaussian = -0.5 * (((x - h) / 0.3) ** 2 + math.log(2 * math.pi * 0.3**2)).sum(-1)
    assert torch.allclose(Likelihood("gaussian", obs_scale=0.3)(h).log_prob(x), gaussian, atol=1e-5)
    learned = Likelihood("learned-gaussian", min_obs_scale=0.05)(torch.cat([h, torch.full_like(h, -50.0)], -1))
    assert learned.event_shape == (6,) and torch.allclose(learned.base_dist.scale, torch.tensor(0.05))
    assert torch.equal(learned.mean, h)


@pytest.mark.parametrize("logit", [-3.0, -0.01, 0.0, 0.7, 4.0])
def test_continuous_bernoulli_density_integrates_to_one(logit: float):
    grid = torch.linspace(0, 1, 20_001, dtype=torch.float64)[:, None]
    density = Likelihood("continuous-bernoulli")(torch.full((1,), logit, dtype=torch.float64)).log_prob(grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-6)


def test_bernoulli_on_grey_data_is_a_clear_error():
    model = VAE(Decoder(2, 5, (4,)), 2)
    with pytest.raises(ValueError, match=r"binarize .* continuous-bernoulli"):
        model(torch.full((3, 5), 0.5))


def test_learned_gaussian_decoder_has_two_outputs_per_pixel():
    lik = Likelihood("learned-gaussian")
    model = VAE(Decoder(2, lik.params_per_pixel * 5, (4,)), 2, lik)
    assert model.likelihood(StandardNormal(2)().sample((3,))).event_shape == (5,)


def test_unknown_likelihood_lists_the_choices():
    with pytest.raises(ValueError, match=", ".join(LIKELIHOODS)):
        Likelihood("poisson")
    assert isinstance(Likelihood()(torch.zeros(1, 2)).base_dist, dist.Bernoulli)
