import pytest
import torch

from pyrovae import spec
from pyrovae.guides.delta import Corruption
from pyrovae.inference import OBJECTIVES, log_weights, make_objective


def test_mask_and_gaussian_corruption_and_identity_in_eval_mode():
    x = torch.ones(200, 500)
    masked = Corruption("mask:0.3")(x)
    assert set(masked.unique().tolist()) == {0.0, 1.0} and (masked == 0).float().mean().item() == pytest.approx(
        0.3, abs=0.01
    )
    noisy = Corruption("gaussian:0.5")(x)
    assert (noisy - x).std().item() == pytest.approx(0.5, abs=0.01)
    assert torch.equal(Corruption("mask:0.3").eval()(x), x)


@pytest.mark.parametrize("bad", ["mask", "mask:1.2", "gaussian:-1", "blur:2", "none:1"])
def test_bad_corruption_is_a_clear_error(bad: str):
    with pytest.raises(ValueError, match="mask:P"):
        Corruption(bad)


NEED_SPREAD = ("tc-elbo", "capacity")  # a total correlation, a KL held at a target: terms of a posterior's spread


@pytest.mark.parametrize("objective", [name for name in OBJECTIVES if name not in NEED_SPREAD])
@pytest.mark.parametrize("beta", [0.0, 1.0, 3.0])
def test_autoencoder_objective_is_the_reconstruction_log_likelihood(objective: str, beta: float):
    model, guide = spec.build("ae", data_dim=12)
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    loss = make_objective(objective).differentiable_loss(model, guide, x, beta=beta)
    reconstruction = model.conditionals["decoder"](guide.conditionals["encoder_z"].net(x)).log_prob(x)  # (5,)
    assert loss.item() == pytest.approx(-reconstruction.sum().item(), rel=1e-6)
    log_w = log_weights(model, guide, x, num_particles=3, beta=beta)  # every particle is the point f(x)
    assert log_w.shape == (3, 5) and torch.allclose(log_w, reconstruction.expand(3, 5), atol=1e-5)
    assert not model.probabilistic


@pytest.mark.parametrize("objective", NEED_SPREAD)
def test_objectives_of_a_posteriors_spread_refuse_an_autoencoder(objective: str):
    model, guide = spec.build("ae", data_dim=12)
    with pytest.raises(NotImplementedError, match="is a point mass"):
        make_objective(objective).differentiable_loss(model, guide, torch.ones(5, 12))


def test_denoising_encoder_sees_the_corrupted_input():
    _, guide = spec.build("dae", data_dim=12)
    x = torch.ones(4, 12)
    net = guide.conditionals["encoder_z"].net
    torch.manual_seed(0)
    z = guide(x)
    torch.manual_seed(0)
    assert torch.allclose(z, net(Corruption("mask:0.3")(x))) and not torch.allclose(z, net(x))
