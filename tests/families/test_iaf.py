"""The inverse autoregressive flow guide family (``iaf``)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyrovae import families
from pyrovae.nets import mlp


def build(size: int = 3, in_dim: int = 5, **options: float) -> nn.Module:
    family = families.get("iaf", "guide", options)
    return family.conditional(mlp(in_dim, [16], family.num_outputs(size)), in_dim, size)


def sample_in_plates(q: nn.Module, x: torch.Tensor, k: int = 3) -> poutine.Trace:
    def guide() -> None:
        with pyro.plate("particles", k, dim=-2), pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", q(x))

    return poutine.trace(guide).get_trace()


def test_family_declares_a_reparameterized_guide_without_mean_or_factors():
    family = families.get("iaf", "guide")
    caps = family.capabilities
    assert caps.reparameterized and not caps.has_mean and not caps.factorized and not caps.analytic_kl
    assert family.sizes(3) == (2, 3, 64) and family.num_outputs(3) == 9  # loc, scale, h of size 3
    assert families.get("iaf", "guide", {"context": 4, "hidden": 10}).num_outputs(3) == 10


@pytest.mark.parametrize("options", [{"flows": -1}, {"flows": 1.5}, {"hidden": -2}, {"depth": 2}])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError, match="iaf"):
        families.get("iaf", "guide", options)


def test_hidden_narrower_than_the_latent_is_refused():
    with pytest.raises(ValueError, match="hidden must be at least"):
        build(size=3, hidden=2)


def test_shapes_under_particle_and_data_plates_and_sampled_values_score_without_inversion():
    q, x = build(), torch.randn(4, 5)
    trace = sample_in_plates(q, x)
    site = trace.nodes["z"]
    assert site["value"].shape == (3, 4, 3) and site["fn"].batch_shape == (3, 4) and site["fn"].event_shape == (3,)
    for step in site["fn"].transforms:  # the cache of the forward pass must serve log_prob
        step._inverse = lambda y: pytest.fail("log_prob of a sampled value inverted the flow")
    trace.compute_log_prob()
    assert site["log_prob"].shape == (3, 4) and torch.isfinite(site["log_prob"]).all()


def test_log_prob_is_base_log_prob_minus_log_det_jacobian():
    q = build(size=3)
    d = q(torch.randn(1, 5))
    z0 = d.base_dist.rsample()  # (1, 3)

    def flow(v: torch.Tensor) -> torch.Tensor:
        for step in d.transforms:
            v = step(v)
        return v

    z = flow(z0)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0)).squeeze(0), z0[0].detach())  # (3, 3)
    expected = d.base_dist.log_prob(z0) - torch.linalg.slogdet(jac).logabsdet
    assert torch.allclose(d.log_prob(z), expected, atol=1e-5)  # the cached inverse
    assert torch.allclose(d.log_prob(z.detach().clone()), expected, atol=1e-5)  # inverted afresh
    assert not torch.allclose(z, z0) and torch.linalg.slogdet(jac).logabsdet.abs() > 1e-3  # not the identity


def test_log_prob_broadcasts_values_of_fewer_or_more_batch_dims():
    d = build(size=3)(torch.randn(4, 5))  # batch (4,)
    z = torch.randn(4, 3)
    full = d.log_prob(z)
    assert torch.allclose(d.log_prob(z[:1].clone()), d.log_prob(z[:1].expand(4, 3).clone()))  # (1, 3) vs (4,)
    assert torch.allclose(d.log_prob(z.expand(2, 4, 3).clone()), full.expand(2, 4))  # particles in front


def test_rsample_gradients_reach_the_encoder_and_every_flow_parameter():
    q = build(size=3)
    d = q(torch.randn(4, 5))
    z = d.rsample()
    (z.pow(2).sum() + d.log_prob(z).sum()).backward()
    assert len(list(q.flows.parameters())) > 0
    for name, p in q.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_flows_is_the_diagonal_normal_exactly():
    net = mlp(5, [16], 6)
    q = families.get("iaf", "guide", {"flows": 0}).conditional(net, 5, 3)
    normal = families.get("normal", "guide").conditional(net, 5, 3)
    assert families.get("iaf", "guide", {"flows": 0}).num_outputs(3) == 6
    x, z = torch.randn(4, 5), torch.randn(2, 4, 3)
    a, b = q(x), normal(x)
    assert isinstance(a, dist.Independent) and not list(q.flows.parameters())
    assert torch.equal(a.mean, b.mean) and torch.equal(a.stddev, b.stddev)
    assert torch.equal(a.log_prob(z), b.log_prob(z))


def test_a_one_dimensional_latent_works_without_warnings():
    q = build(size=1, in_dim=5)
    d = q(torch.randn(4, 5))
    z = d.rsample()
    assert z.shape == (4, 1) and torch.isfinite(d.log_prob(z)).all()


def test_same_seed_builds_the_same_guide_and_a_state_dict_reloads_it():
    torch.manual_seed(7)
    a = build(size=4)
    torch.manual_seed(7)
    b = build(size=4)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    orders = [step.nn.permutation.tolist() for step in a.flows]
    assert orders == [[0, 1, 2, 3], [3, 2, 1, 0]]  # alternating, drawn from no RNG
    torch.manual_seed(8)
    c = build(size=4)
    c.load_state_dict(a.state_dict())
    x, z = torch.randn(2, 5), torch.randn(2, 4)
    assert torch.equal(a(x).log_prob(z), c(x).log_prob(z))


def test_trace_elbo_on_a_tiny_vae_is_finite_and_trains_the_flow():
    size, data_dim = 2, 6
    q = build(size=size, in_dim=data_dim, flows=2, hidden=8)
    decoder = mlp(size, [8], data_dim)
    x = torch.bernoulli(torch.full((5, data_dim), 0.3))

    def model(x: torch.Tensor) -> None:
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(size), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x: torch.Tensor) -> None:
        pyro.module("encoder", q)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", q(x))

    before = [p.detach().clone() for p in q.flows.parameters()]
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), elbo)
    losses = [svi.step(x) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(p0, p) for p0, p in zip(before, q.flows.parameters(), strict=True))
