import pytest
import torch
from pyro.distributions.kl import kl_divergence

from pyrovae.inference import log_weights, make_objective

from conftest import binary, make_vae


@pytest.mark.parametrize("beta", [0.0, 0.25, 1.0, 4.0])
def test_mf_elbo_loss_is_reconstruction_minus_beta_analytic_kl(beta: float):
    model, guide = make_vae()
    x = binary(5)
    torch.manual_seed(1)
    loss = make_objective("mf-elbo").differentiable_loss(model, guide, x, beta=beta)
    torch.manual_seed(1)
    q = guide.posterior(x)
    z = q.rsample()
    reconstruction = model.likelihood(z).log_prob(x).sum()
    kl = kl_divergence(q, model.prior(5)).sum()
    assert loss.item() == pytest.approx(-(reconstruction - beta * kl).item(), rel=1e-6, abs=1e-5)


def test_mf_elbo_loss_scales_with_num_data():
    model, guide = make_vae()
    x = binary(5)
    objective = make_objective("mf-elbo")
    torch.manual_seed(1)
    full = objective.differentiable_loss(model, guide, x, beta=0.5)
    torch.manual_seed(1)
    scaled = objective.differentiable_loss(model, guide, x, beta=0.5, num_data=50)
    assert scaled.item() == pytest.approx(10 * full.item(), rel=1e-6)


def test_elbo_and_mf_elbo_agree_in_expectation():
    model, guide = make_vae()
    x = binary(4)
    k = 20_000
    elbo = make_objective("elbo", num_particles=k).differentiable_loss(model, guide, x)
    mf = make_objective("mf-elbo", num_particles=k).differentiable_loss(model, guide, x)
    # standard error of the Trace_ELBO estimate, from the per-particle log-weights
    se = log_weights(model, guide, x, num_particles=k).sum(-1).std() / k**0.5
    assert abs(elbo.item() - mf.item()) < 4 * se.item()


def test_unknown_objective_lists_the_choices():
    with pytest.raises(ValueError, match="elbo, mf-elbo"):
        make_objective("vi")
