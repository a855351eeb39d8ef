import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from pyrovae.inference import IWAE, RenyiBound, iwae_bound, make_objective
from pyrovae.primitives import data_plate

from conftest import binary, make_vae
from linear_gaussian import LinearGaussian


@pytest.mark.parametrize("gradient", ["standard", "dreg"])
def test_one_particle_equals_trace_elbo(gradient: str):
    model, guide = make_vae()
    x = binary(6)
    torch.manual_seed(4)
    expected = Trace_ELBO().differentiable_loss(model, guide, x, beta=0.7, num_data=30)
    torch.manual_seed(4)
    loss = IWAE(1, gradient=gradient).differentiable_loss(model, guide, x, beta=0.7, num_data=30)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("gradient", ["standard", "dreg"])
def test_subsampled_loss_is_n_over_b_times_the_full_batch_loss(gradient: str):
    model, guide = make_vae()
    x = binary(6)
    objective = IWAE(8, gradient=gradient)
    torch.manual_seed(0)
    full = objective.differentiable_loss(model, guide, x)
    torch.manual_seed(0)
    subsampled = objective.differentiable_loss(model, guide, x, num_data=600)
    assert subsampled.item() == pytest.approx(100 * full.item(), rel=1e-6)


@pytest.mark.parametrize("gradient", ["standard", "dreg"])
def test_loss_is_the_negative_bound_reported_by_iwae_bound(gradient: str):
    model, guide = make_vae()
    x = binary(6)
    torch.manual_seed(2)
    loss = IWAE(16, gradient=gradient).loss(model, guide, x)
    torch.manual_seed(2)
    bound = iwae_bound(model, guide, x, num_particles=16)
    assert loss == pytest.approx(-bound.sum().item(), rel=1e-6)


def test_exact_guide_loss_is_minus_log_px():
    lg = LinearGaussian()
    x = lg.sample_x(5)
    for objective in (IWAE(7), IWAE(7, gradient="dreg"), RenyiBound(0.5, num_particles=7)):
        loss = objective.differentiable_loss(lg.model, lg.exact_guide, x)
        assert loss.item() == pytest.approx(-lg.log_px(x).sum().item(), abs=1e-9)


def test_pyro_renyi_elbo_differs_under_subsampling_and_ours_does_not():
    """Pyro's RenyiELBO scales log-weights by N / B inside the log-sum-exp; we scale outside."""
    lg = LinearGaussian()
    x = lg.sample_x(4)
    torch.manual_seed(0)
    ours = RenyiBound(0.0, num_particles=6).differentiable_loss(lg.model, lg.shifted_guide, x, num_data=40)
    torch.manual_seed(0)
    expected = -10 * iwae_bound(lg.model, lg.shifted_guide, x, num_particles=6).sum()
    assert ours.item() == pytest.approx(expected.item(), rel=1e-9)
    torch.manual_seed(0)
    pyros = pyro.infer.RenyiELBO(alpha=0.0, num_particles=6).loss(lg.model, lg.shifted_guide, x, num_data=40)
    assert abs(pyros - ours.item()) > 1.0


def test_trains_with_pyro_svi():
    model, guide = make_vae()
    x = binary(20)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), IWAE(5, gradient="dreg"))
    losses = [svi.step(x) for _ in range(60)]
    assert sum(losses[-10:]) < sum(losses[:10])


def test_non_reparameterizable_guide_is_a_clear_error():
    def model(x):
        with data_plate(x.shape[0], None, x.device):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with data_plate(x.shape[0], None, x.device):
            pyro.sample("c", dist.Bernoulli(0.3))

    for objective in (IWAE(3), IWAE(3, gradient="dreg")):
        with pytest.raises(NotImplementedError, match=r"site 'c'.*use objective 'elbo'"):
            objective.differentiable_loss(model, guide, torch.zeros(4))


def test_unknown_gradient_and_alpha_one_are_rejected():
    with pytest.raises(ValueError, match="standard, dreg"):
        IWAE(5, gradient="vimco")
    with pytest.raises(ValueError, match="alpha = 1"):
        RenyiBound(1.0)
    with pytest.raises(ValueError, match="alpha must not be 1"):
        make_objective("renyi", alpha=1.0)


def _gradients(gradient: str, seed: int, model, guide, x, k: int = 5, beta: float = 1.0) -> dict[str, torch.Tensor]:
    pyro.set_rng_seed(seed)
    with poutine.trace(param_only=True) as capture:
        IWAE(k, gradient=gradient).differentiable_loss(model, guide, x, beta=beta, num_data=10).backward()
    params = {name: site["value"].unconstrained() for name, site in capture.trace.nodes.items()}
    grads = {name: p.grad.clone() for name, p in params.items()}
    for p in params.values():
        p.grad = None
    return grads


def _guide_gradient_draws(
    model, guide, x, *, k: int, draws: int, is_guide_param, beta: float = 1.0
) -> dict[str, torch.Tensor]:
    """``draws`` independent gradient estimates of the guide's parameters, ``(draws, P)`` per estimator."""
    out = {}
    for gradient in ("standard", "dreg"):
        rows = []
        for seed in range(draws):
            grads = _gradients(gradient, seed, model, guide, x, k, beta)
            rows.append(torch.cat([v.flatten() for name, v in grads.items() if is_guide_param(name)]))
        out[gradient] = torch.stack(rows)
    return out


def test_dreg_model_gradients_equal_the_standard_ones_draw_by_draw():
    model, guide = make_vae()
    x = binary(4)
    standard, dreg = _gradients("standard", 3, model, guide, x), _gradients("dreg", 3, model, guide, x)
    for name in standard:
        if name.startswith("decoder"):
            assert torch.allclose(standard[name], dreg[name], atol=1e-5), name


@pytest.mark.slow  # a statistical check: 11 s
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])  # beta-scaled and masked latents keep part of the score term
def test_dreg_guide_gradient_has_the_standard_expectation(beta: float):
    model, guide = make_vae(data_dim=6, latent_dim=2, hidden=(4,))
    x = binary(3, dim=6)
    draws = _guide_gradient_draws(
        model, guide, x, k=5, draws=400, is_guide_param=lambda n: n.startswith("encoder"), beta=beta
    )
    standard, dreg = draws["standard"], draws["dreg"]
    se = (standard.var(0) / len(standard) + dreg.var(0) / len(dreg)).sqrt()
    live = se > 0  # dead ReLU units have gradient exactly 0 under both estimators
    assert torch.equal(standard[:, ~live], dreg[:, ~live]) and live.sum() > 20
    z = (standard.mean(0) - dreg.mean(0))[live] / se[live]
    assert z.abs().max() < 4.5  # same expectation, coordinate by coordinate


def test_dreg_rejects_latent_sites_scaled_differently():
    def model(x):
        with data_plate(x.shape[0], None, x.device):
            a = pyro.sample("a", dist.Normal(0.0, 1.0))
            with poutine.scale(scale=0.5):
                b = pyro.sample("b", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(a + b, 1.0), obs=x)

    def guide(x):
        with data_plate(x.shape[0], None, x.device):
            pyro.sample("a", dist.Normal(0.0, 1.0))
            with poutine.scale(scale=0.5):
                pyro.sample("b", dist.Normal(0.0, 1.0))

    with pytest.raises(NotImplementedError, match=r"one scale for every latent site, got \[0.5, 1.0\]"):
        IWAE(3, gradient="dreg").differentiable_loss(model, guide, torch.zeros(4))


def test_dreg_guide_gradient_vanishes_at_the_exact_posterior():
    """There log w is constant in z, so DReG's guide gradient is exactly 0; the standard one is noise."""
    lg = LinearGaussian()
    guide = lg.learnable_guide()
    x = lg.sample_x(4)
    standard, dreg = _gradients("standard", 0, lg.model, guide, x), _gradients("dreg", 0, lg.model, guide, x)
    assert all(torch.allclose(g, torch.zeros_like(g), atol=1e-9) for g in dreg.values())
    assert max(g.abs().max().item() for g in standard.values()) > 1e-2


@pytest.mark.parametrize("k", [5, 50])
def test_dreg_guide_gradient_has_lower_variance_near_the_posterior(k: int):
    lg = LinearGaussian()
    guide = lg.learnable_guide(perturbation=0.05)
    draws = _guide_gradient_draws(lg.model, guide, lg.sample_x(4), k=k, draws=100, is_guide_param=lambda n: True)
    ratio = (draws["dreg"].var(0).sum() / draws["standard"].var(0).sum()).item()
    print(f"k={k}: DReG / standard total guide-gradient variance = {ratio:.4f}")
    assert ratio < 0.1
