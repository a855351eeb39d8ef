import math

import pytest
import torch

from pyrovae.families.bernoulli import Bernoulli
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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_bernoulli_is_exact_to_rounding(dtype: torch.dtype):
    # logits from -60 to 60 (exp(-|l|) underflows at the ends), the value broadcast over particles as in IWAE
    logits64 = torch.cat([torch.linspace(-60, 60, 241), torch.randn(59) * 5]).double().reshape(3, 1, 100)
    logits64 = logits64.expand(3, 2, 100).clone()
    value64 = torch.bernoulli(torch.full((2, 100), 0.5, dtype=torch.float64))
    exact = value64 * logits64 - logits64.clamp(min=0) - torch.log1p(torch.exp(-logits64.abs()))  # x l - softplus(l)
    logits = logits64.to(dtype).requires_grad_()
    fast = Bernoulli(logits=logits).log_prob(value64.to(dtype))
    (grad,) = torch.autograd.grad(fast.sum(), logits)
    eps = torch.finfo(dtype).eps  # one rounding of 1 + exp(-|l|), and of the result
    assert fast.shape == (3, 2, 100) and torch.allclose(fast.double(), exact, rtol=eps, atol=eps)
    assert torch.allclose(grad.double(), value64 - torch.sigmoid(logits64), rtol=eps, atol=eps)
    # torch's kernel, l (1 - x) - log sigmoid(l), cancels to within eps |l|: near 0 it is the less exact one
    plain = torch.distributions.Bernoulli(logits=logits).log_prob(value64.to(dtype))
    assert torch.all((fast - plain).abs() <= 2 * eps * (1 + logits.abs()))


def test_fast_bernoulli_differentiates_in_the_value_too():
    logits = torch.randn(4, 5, dtype=torch.float64)
    value = torch.rand(4, 5, dtype=torch.float64, requires_grad=True)  # a relaxed value: d log p / dx = logits
    (grad,) = torch.autograd.grad(Bernoulli(logits=logits, validate_args=False).log_prob(value).sum(), value)
    assert torch.allclose(grad, logits)
    assert torch.autograd.gradcheck(lambda lg: Bernoulli(logits=lg).log_prob(torch.ones(4, 5)), logits.requires_grad_())


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
        Likelihood("laplace")  # a prior, not a likelihood
    assert isinstance(Likelihood()(torch.zeros(1, 2)).base_dist, Bernoulli)
