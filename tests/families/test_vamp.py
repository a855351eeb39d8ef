"""The VampPrior family (``vamp``): a mixture of the guide at learned pseudo-inputs."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyrovae import families
from pyrovae.graph import DiagonalNormal
from pyrovae.nets import GaussianEncoder, mlp

K, D, SIZE = 5, 6, 2


def guide_and_prior(k: int = K, **context) -> tuple[nn.Module, nn.Module]:
    guide = DiagonalNormal(GaussianEncoder(D, SIZE, (8,)))
    family = families.get("vamp", "prior", {"components": k})
    return guide, family.free(SIZE, {}, learn=True, context={"guide": guide, "data_dim": D, **context})


def test_family_declares_a_mixture_prior():
    family = families.get("vamp", "prior")
    caps = family.capabilities
    assert family.option("components") == 500 and family.roles == {"prior"}
    assert not caps.reparameterized and caps.has_mean and not caps.factorized and not caps.analytic_kl
    with pytest.raises(ValueError, match="unknown guide"):
        families.get("vamp", "guide")


def test_log_prob_is_the_mean_of_the_guide_densities_at_the_pseudo_inputs():
    guide, prior = guide_and_prior()
    z = torch.randn(3, 4, SIZE)  # (k, B, size)
    loc, scale = guide.encoder(prior.pseudo_inputs)  # (K, size) each
    by_hand = dist.Normal(loc, scale).log_prob(z.unsqueeze(-2)).sum(-1).logsumexp(-1) - math.log(K)  # (k, B)
    p = prior()
    assert p.batch_shape == () and p.event_shape == (SIZE,)
    assert torch.allclose(p.log_prob(z), by_hand, atol=1e-6)


def test_sampling_and_mean():
    guide, prior = guide_and_prior()
    p = prior()
    samples = p.sample((10,))
    assert samples.shape == (10, SIZE) and torch.isfinite(samples).all()
    loc, _ = guide.encoder(prior.pseudo_inputs)
    assert torch.allclose(p.mean, loc.mean(0), atol=1e-6)


def test_the_prior_owns_only_its_pseudo_inputs_and_the_param_store_holds_each_tensor_once():
    guide, prior = guide_and_prior()
    assert [n for n, _ in prior.named_parameters()] == ["pseudo_inputs"]
    assert list(prior.state_dict()) == ["pseudo_inputs"]
    assert prior.pseudo_inputs.shape == (K, D) and not list(prior.children())
    pyro.module("prior_z", prior)
    pyro.module("encoder_z", guide)
    store = dict(pyro.get_param_store().named_parameters())
    assert len(store) == 1 + len(list(guide.parameters()))
    assert len({id(t) for t in store.values()}) == len(store)
    assert {id(t) for t in store.values()} == {id(t) for t in [*prior.parameters(), *guide.parameters()]}
    assert [n for n in store if n.startswith("prior_z")] == ["prior_z$$$pseudo_inputs"]


def test_log_prob_gradients_reach_the_pseudo_inputs_and_the_encoder():
    guide, prior = guide_and_prior()
    prior().log_prob(torch.randn(3, 4, SIZE)).sum().backward()
    assert prior.pseudo_inputs.grad is not None and prior.pseudo_inputs.grad.abs().sum() > 0
    for name, p in guide.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sample_site_in_particle_and_data_plates():
    _, prior = guide_and_prior()

    def model() -> None:
        with pyro.plate("particles", 3, dim=-2), pyro.plate("data", 4, dim=-1):
            pyro.sample("z", prior())

    trace = poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["z"]
    assert site["value"].shape == (3, 4, SIZE) and site["log_prob"].shape == (3, 4)


def test_initialisation_from_the_paper_or_from_pseudo_init():
    _, prior = guide_and_prior(k=500)
    u = prior.pseudo_inputs.detach()
    assert abs(u.mean().item() - 0.05) < 2e-3 and abs(u.std().item() - 0.01) < 2e-3
    init = torch.rand(K, D)
    _, prior = guide_and_prior(pseudo_init=init)
    assert torch.equal(prior.pseudo_inputs.detach(), init) and prior.pseudo_inputs is not init
    with pytest.raises(ValueError, match="pseudo_init must be 5 x 6"):
        guide_and_prior(pseudo_init=torch.rand(K + 1, D))


def test_learn_false_still_learns_and_bad_contexts_are_refused():
    guide = DiagonalNormal(GaussianEncoder(D, SIZE, (8,)))
    family = families.get("vamp", "prior", {"components": K})
    prior = family.free(SIZE, {}, learn=False, context={"guide": guide, "data_dim": D})
    assert prior.pseudo_inputs.requires_grad
    with pytest.raises(ValueError, match="no parameters to set"):
        family.free(SIZE, {"loc": 0.0}, learn=False, context={"guide": guide, "data_dim": D})
    with pytest.raises(ValueError, match="guide"):
        family.free(SIZE, {}, learn=True, context={"data_dim": D})
    with pytest.raises(ValueError, match="data size"):
        family.free(SIZE, {}, learn=True, context={"guide": guide})
    with pytest.raises(ValueError, match="components must be"):
        families.get("vamp", "prior", {"components": 0})
    with pytest.raises(ValueError, match="reads x alone"):
        family.free(SIZE + 1, {}, learn=True, context={"guide": guide, "data_dim": D})()


@pytest.mark.parametrize("guide_family", ["normal", "iaf"])
def test_trace_elbo_trains_pseudo_inputs_and_encoder(guide_family):
    family = families.get(guide_family, "guide")
    guide = family.conditional(mlp(D, [8], family.num_outputs(SIZE)), D, SIZE)
    prior = families.get("vamp", "prior", {"components": K}).free(
        SIZE, {}, learn=True, context={"guide": guide, "data_dim": D}
    )
    decoder = mlp(SIZE, [8], D)
    x = torch.bernoulli(torch.full((4, D), 0.3))

    def model(x: torch.Tensor) -> None:
        pyro.module("decoder", decoder)
        pyro.module("prior_z", prior)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", prior())
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide_fn(x: torch.Tensor) -> None:
        pyro.module("encoder_z", guide)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", guide(x))

    before = prior.pseudo_inputs.detach().clone()
    svi = SVI(model, guide_fn, Adam({"lr": 1e-2}), Trace_ELBO(num_particles=2, vectorize_particles=True))
    losses = [svi.step(x) for _ in range(2)]
    assert all(math.isfinite(loss) for loss in losses)
    assert not torch.equal(before, prior.pseudo_inputs.detach())


def test_the_normal_mixture_log_prob_equals_the_elementwise_one():
    from pyrovae.families.vamp import NormalMixture

    loc, scale = torch.randn(6, 3), torch.rand(6, 3) + 0.1
    components = dist.Normal(loc, scale).to_event(1)
    weights = dist.Categorical(logits=torch.zeros(6))
    z = 2 * torch.randn(4, 5, 3)
    expected = dist.MixtureSameFamily(weights, components).log_prob(z)
    mixture = NormalMixture(loc, scale)
    torch.testing.assert_close(mixture.log_prob(z), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixture.expand((4, 5)).log_prob(z), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixture.mean, dist.MixtureSameFamily(weights, components).mean)
    torch.testing.assert_close(mixture.variance, dist.MixtureSameFamily(weights, components).variance)
    assert mixture.expand((4, 5)).sample((2,)).shape == (2, 4, 5, 3)
    logits = torch.randn(6)
    weighted = dist.MixtureSameFamily(dist.Categorical(logits=logits), components)
    torch.testing.assert_close(
        NormalMixture(loc, scale, logits).log_prob(z), weighted.log_prob(z), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(NormalMixture(loc, scale, logits).variance, weighted.variance)
