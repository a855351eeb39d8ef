"""VIMCO: L_k with leave-one-out baselines for sampled discrete latents, against the exact gradient of L_k.

Two binary units h ~ Bern(sigmoid(c)), x | h ~ N(A h, s^2 I), and the guide q(h | x) = Bern(sigmoid(x V)):
with 4 values of h, L_k = sum over the 4^k tuples (h_1..h_k) of prod_i q(h_i | x) log (1/k) sum_i w(h_i) is
computed exactly, and so is its gradient in V.
"""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.inference import iwae_bound, log_mean_exp, log_weights
from pyrovae.inference.objectives import make_objective
from pyrovae.inference.vimco import VIMCO, leave_one_out_bounds

H, D, S = 2, 2, 0.8
PRIOR = torch.tensor([0.3, -0.5], dtype=torch.float64)
A = torch.tensor([[1.5, -1.0], [0.5, 2.0]], dtype=torch.float64)  # x's mean: h @ A
V = torch.tensor([[0.4, -0.3], [0.2, 0.6]], dtype=torch.float64, requires_grad=True)
CODES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=H)), dtype=torch.float64)  # (4, H)


def model(x):
    with pyro.plate("data", x.shape[0], dim=-1):
        h = pyro.sample("h", dist.Bernoulli(logits=PRIOR).expand([x.shape[0], H]).to_event(1))
        pyro.sample("x", dist.Normal(h @ A, S).to_event(1), obs=x)


def guide(x):
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("h", dist.Bernoulli(logits=x @ V).to_event(1))


def exact_bound(x: torch.Tensor, k: int) -> torch.Tensor:
    """L_k per datapoint, ``(B,)``, summed over every k-tuple of the 4 values of h (differentiable in V)."""
    log_q = dist.Bernoulli(logits=(x @ V)[:, None, :]).log_prob(CODES).sum(-1)  # (B, 4)
    log_p = dist.Bernoulli(logits=PRIOR).log_prob(CODES).sum(-1) + dist.Normal(CODES @ A, S).log_prob(
        x[:, None, :]
    ).sum(-1)  # (B, 4)
    log_w = log_p - log_q
    tuples = torch.tensor(list(itertools.product(range(4), repeat=k)))  # (4^k, k)
    probability = log_q[:, tuples].sum(-1).exp()  # (B, 4^k)
    bound = log_w[:, tuples].logsumexp(-1) - math.log(k)  # (B, 4^k)
    return (probability * bound).sum(-1)


def test_leave_one_out_bounds_replace_each_weight_by_the_geometric_mean_of_the_others():
    log_w = torch.randn(4, 3, dtype=torch.float64)
    for j in range(4):
        others = [i for i in range(4) if i != j]
        replaced = log_w.clone()
        replaced[j] = log_w[others].mean(0)
        torch.testing.assert_close(leave_one_out_bounds(log_w)[j], replaced.logsumexp(0) - math.log(4))
    with pytest.raises(ValueError, match="at least 2 particles"):
        leave_one_out_bounds(log_w[:1])


def test_the_loss_is_the_negative_iwae_bound():
    x = torch.randn(5, D, dtype=torch.float64)
    objective = VIMCO(3)
    pyro.set_rng_seed(1)
    loss = objective.differentiable_loss(model, guide, x)
    pyro.set_rng_seed(1)
    torch.testing.assert_close(loss, -iwae_bound(model, guide, x, num_particles=3).sum())


def test_vimcos_gradient_of_l_k_is_unbiased():
    x = torch.randn(3, D, dtype=torch.float64)
    k = 3
    exact = torch.autograd.grad(-exact_bound(x, k).sum(), V)[0]
    repeats, copies = 20, 2000
    estimates = torch.stack(
        [torch.autograd.grad(VIMCO(k).differentiable_loss(model, guide, x.repeat(copies, 1)), V)[0] / copies
         for _ in range(repeats)]
    )  # fmt: skip
    stderr = estimates.std(0) / math.sqrt(repeats)
    assert ((estimates.mean(0) - exact).abs() < 4 * stderr + 1e-6).all(), (estimates.mean(0), exact)
    xs = x.repeat(copies, 1)  # without the score term (log w's own gradient alone) the estimate is biased:
    pathwise = torch.autograd.grad(-log_mean_exp(log_weights(model, guide, xs, num_particles=k)).sum(), V)[0] / copies
    assert (pathwise - exact).abs().max() > 10 * stderr.max()  # so the test above can fail


def test_the_iwae_objective_of_a_score_function_latent_is_vimco():
    assert isinstance(make_objective("iwae", num_particles=5, baselines=True), VIMCO)
    with pytest.raises(ValueError, match="num_particles >= 2"):
        make_objective("iwae", num_particles=1, baselines=True)
    with pytest.raises(ValueError, match="iwae with the dreg gradient needs a reparameterized guide"):
        make_objective("iwae", num_particles=5, gradient="dreg", baselines=True)
    with pytest.raises(ValueError, match="objective renyi needs a reparameterized guide"):
        make_objective("renyi", num_particles=5, baselines=True)
