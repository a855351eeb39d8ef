"""Discrete latents enumerated exactly: every bound against the closed form of a Gaussian mixture.

y ~ Cat(pi) over K components, z | y ~ N(m_y, I) and x | z ~ N(z, s^2 I), so that
p(x) = sum_y pi_y N(x; m_y, (1 + s^2) I), p(y | x) is proportional to pi_y N(x; m_y, (1 + s^2) I)
and p(z | x, y) = N(v (m_y + x / s^2), v I) with v = s^2 / (1 + s^2).
"""

import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyrovae.inference import iwae_bound, log_likelihood, log_weights
from pyrovae.inference.log_weights import elbo_terms
from pyrovae.inference.trace_elbo import TraceGraphELBO

K, D, B, S = 3, 2, 7, 0.5  # components, dimensions, datapoints, likelihood scale
PI = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
M = torch.tensor([[-2.0, 0.0], [0.0, 1.5], [2.5, -1.0]], dtype=torch.float64)
V = S**2 / (1 + S**2)
ENUM = {"enumerate": "parallel"}
W = torch.tensor([[1.0, -1.0, 0.5], [0.3, 0.2, -0.4]], dtype=torch.float64, requires_grad=True)  # q(y | x)'s logits


def data() -> torch.Tensor:
    return torch.randn(B, D, dtype=torch.float64) * 2


def log_px_given_y(x: torch.Tensor) -> torch.Tensor:
    """log N(x; m_y, (1 + s^2) I) for every component: ``(B, K)``."""
    return dist.Normal(M, math.sqrt(1 + S**2)).log_prob(x[:, None, :]).sum(-1)


def log_marginal(x: torch.Tensor) -> torch.Tensor:
    return (PI.log() + log_px_given_y(x)).logsumexp(-1)


def model(x, *, with_z: bool = True, enumerate_y: bool = False):
    with pyro.plate("data", x.shape[0], dim=-1):
        y = pyro.sample("y", dist.Categorical(PI), infer=ENUM if enumerate_y else {})
        if with_z:
            z = pyro.sample("z", dist.Normal(M[y], 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, S).to_event(1), obs=x)
        else:
            pyro.sample("x", dist.Normal(M[y], math.sqrt(1 + S**2)).to_event(1), obs=x)


def exact_guide(x, *, enumerate_y: bool = True):
    """q(y | x) q(z | x, y) = p(y | x) p(z | x, y)."""
    posterior_y = (PI.log() + log_px_given_y(x)).softmax(-1)
    with pyro.plate("data", x.shape[0], dim=-1):
        y = pyro.sample("y", dist.Categorical(posterior_y), infer=ENUM if enumerate_y else {})
        pyro.sample("z", dist.Normal(V * (M[y] + x / S**2), math.sqrt(V)).to_event(1))


def mixture_guide(x):
    """q(z | x) = p(z | x): the mixture sum_y p(y | x) N(z; v (m_y + x / s^2), v I), y summed in the model."""
    posterior_y = (PI.log() + log_px_given_y(x)).softmax(-1)  # (B, K)
    components = dist.Normal(V * (M + x[:, None, :] / S**2), math.sqrt(V)).to_event(1)  # batch (B, K)
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("z", dist.MixtureSameFamily(dist.Categorical(posterior_y), components))


def rough_guide(x, *, enumerate_y: bool = True):
    """A guide far from the posterior: q(y | x) = softmax(x W), q(z | x, y) = N(m_y + x / 2, 1)."""
    with pyro.plate("data", x.shape[0], dim=-1):
        y = pyro.sample("y", dist.Categorical(logits=x @ W), infer=ENUM if enumerate_y else {})
        pyro.sample("z", dist.Normal(M[y] + x / 2, 1.0).to_event(1))


def rough_y_guide(x, *, enumerate_y: bool = True):
    """The rough q(y | x) with the exact q(z | x, y) = p(z | x, y)."""
    with pyro.plate("data", x.shape[0], dim=-1):
        y = pyro.sample("y", dist.Categorical(logits=x @ W), infer=ENUM if enumerate_y else {})
        pyro.sample("z", dist.Normal(V * (M[y] + x / S**2), math.sqrt(V)).to_event(1))


def no_latent_guide(x):
    """Nothing but y, enumerated in the model: the guide has no site."""


def y_only_guide(x):
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("y", dist.Categorical(logits=x @ W), infer=ENUM)


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize(
    ("program", "guide"),
    [
        (model, exact_guide),  # y enumerated in the guide, z | y sampled from the exact posterior
        (lambda x: model(x, enumerate_y=True), mixture_guide),  # y enumerated in the model, z from p(z | x)
        (lambda x: model(x, with_z=False, enumerate_y=True), no_latent_guide),  # y alone, summed in the model
        (lambda x: model(x, with_z=False), y_only_guide),  # y alone, summed in a rough guide: q drops out
    ],
    ids=["guide-enumerated", "model-enumerated", "model-only-y", "guide-only-y"],
)
def test_with_y_summed_exactly_every_weight_is_the_marginal_likelihood(program, guide, k: int):
    x = data()
    expected = log_marginal(x).expand(k, B)
    torch.testing.assert_close(log_weights(program, guide, x, num_particles=k), expected)
    torch.testing.assert_close(iwae_bound(program, guide, x, num_particles=k), log_marginal(x))
    ll, stderr = log_likelihood(program, guide, x, num_samples=20, chunk_size=6)
    torch.testing.assert_close(ll, log_marginal(x))
    assert torch.allclose(stderr, torch.zeros(B, dtype=torch.float64), atol=1e-6)


def test_under_the_exact_guide_the_enumerated_elbo_is_the_marginal_likelihood_and_splits_in_two():
    x = data()
    log_px_z, log_ratio = elbo_terms(model, exact_guide, x, num_particles=2000)
    torch.testing.assert_close(log_px_z - log_ratio, log_marginal(x).expand(2000, B))
    assert (log_ratio.mean(0) > 0).all()  # in expectation KL(q(y, z | x) || p(y, z)) >= 0


def test_the_enumerated_elbo_is_pyros_trace_enum_elbo():
    x = data()  # y alone: no sampled site, so both are exact and deterministic
    program = lambda x: model(x, with_z=False)  # noqa: E731
    log_px, log_ratio = elbo_terms(program, y_only_guide, x)
    enum_elbo = -TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(program, y_only_guide, x)
    torch.testing.assert_close((log_px - log_ratio).sum(), enum_elbo)
    assert ((log_px - log_ratio) < log_marginal(x)).all()  # the ELBO is below; the weight is not (q drops out)


def test_with_a_rough_guide_the_bounds_rise_with_k_and_stay_below_log_p():
    x = data().repeat(200, 1)  # many copies: the mean over them is the bound's expectation
    bounds = [iwae_bound(model, rough_guide, x, num_particles=k).mean() for k in (1, 10, 100)]
    truth = log_marginal(x).mean()
    assert bounds[0] < bounds[1] < bounds[2] < truth
    assert truth - bounds[2] < 0.25 * (truth - bounds[0])  # the gap closes


def test_enumerating_y_or_sampling_it_gives_the_same_weight_in_expectation():
    """Sampled y: w = p(x, y, z) / (q(y | x) q(z | x, y)); enumerated: sum_y p / q(z | x, y). Both have mean p(x);
    with q(z | x, y) exact the enumerated one is p(x) itself and the sampled one p(x, y) / q(y | x)."""
    x = data()[:2].repeat(20000, 1)
    truth = log_marginal(x[:2]).exp()
    enumerated = log_weights(model, rough_y_guide, x).exp().reshape(20000, 2)
    sampled = log_weights(model, lambda x: rough_y_guide(x, enumerate_y=False), x).exp().reshape(20000, 2)
    torch.testing.assert_close(enumerated, truth.expand(20000, 2))
    assert sampled.std(0).min() > 0.01 * truth.min()  # a real Monte-Carlo estimate ...
    stderr = sampled.std(0) / math.sqrt(20000)
    assert ((sampled.mean(0) - truth).abs() < 4 * stderr).all()  # ... of the same mean


def test_the_score_function_gradient_with_a_baseline_is_unbiased():
    """d ELBO / d W of q(y | x) = softmax(x W): the score-function estimate (TraceGraph_ELBO, y sampled, a
    constant baseline) averages to the exact gradient (TraceEnum_ELBO, y summed)."""
    x = data()[:3]
    program = lambda x: model(x, with_z=False)  # noqa: E731

    def guide(x, baseline: bool):
        with pyro.plate("data", x.shape[0], dim=-1):
            infer = {"baseline": {"baseline_value": torch.full((x.shape[0],), -8.0, dtype=x.dtype)}} if baseline else {}
            pyro.sample("y", dist.Categorical(logits=x @ W), infer=infer)

    exact = torch.autograd.grad(TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(program, y_only_guide, x), W)[0]
    for baseline in (False, True):
        sampled = functools.partial(guide, baseline=baseline)
        estimates = torch.stack(
            [
                torch.autograd.grad(TraceGraphELBO().differentiable_loss(program, sampled, xs), W)[0] / 2000
                for xs in [x.repeat(2000, 1)] * 20
            ]
        )  # 20 estimates, each of 2000 draws of y per datapoint
        stderr = estimates.std(0) / math.sqrt(20)
        assert ((estimates.mean(0) - exact).abs() < 4 * stderr + 1e-6).all(), (estimates.mean(0), exact)
