import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae import spec
from pyrovae.inference.diagnostics import (
    active_units,
    collapse_message,
    kl_per_dim,
    posterior_means,
    stochastic_latents,
    unit_activity,
)

from conftest import make_vae


def test_posterior_means_are_the_encoder_means_over_all_batches():
    _, guide = make_vae()
    x = torch.bernoulli(torch.full((10, 12), 0.4))
    means = posterior_means(guide, x.split(4))
    assert set(means) == {"z"} and means["z"].shape == (10, 3)
    assert torch.allclose(means["z"], guide.encoder(x)[0])


def test_hierarchical_means_average_over_the_upstream_latent():
    """q(z1 | x) = N(2x, 1), q(z2 | z1) = N(0.5 z1, 1): E_q[z2 | x] = x, whatever z1 was drawn."""

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z1 = pyro.sample("z1", dist.Normal(2 * x, 1.0))
            pyro.sample("z2", dist.Normal(0.5 * z1, 1.0))

    x = torch.linspace(-1, 1, 50)
    means = posterior_means(guide, [x], num_samples=4000)
    assert torch.allclose(means["z1"].squeeze(-1), 2 * x)
    error = means["z2"].squeeze(-1) - x  # Monte-Carlo error of sd 0.5 / sqrt(4000)
    assert error.abs().max() < 4 * 0.5 / 4000**0.5
    # one draw of z1 adds Var = 0.25 to every mean: constant data would look active
    one_draw = posterior_means(guide, [torch.zeros(400)], num_samples=1)["z2"]
    assert unit_activity(one_draw) > 0.1 and unit_activity(posterior_means(guide, [torch.zeros(400)])["z2"]) < 0.01


def test_units_whose_mean_ignores_x_are_inactive():
    _, guide = make_vae(latent_dim=3)
    with torch.no_grad():  # unit 0 follows the data strongly; units 1 and 2 ignore it
        last = guide.encoder.net[-1]
        last.weight.zero_()
        last.bias.zero_()
        guide.encoder.net[0].weight.fill_(1.0)
        last.weight[0].fill_(1.0)
    x = torch.bernoulli(torch.full((50, 12), 0.5))
    activity = unit_activity(posterior_means(guide, [x])["z"])
    assert activity[0] > 0.01 and torch.all(activity[1:] == 0)
    assert active_units(guide, [x]) == {"z": 1}


def normal_kl(mu_q, sigma_q, mu_p, sigma_p):
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) per dimension, written out."""
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2) - 0.5


def test_kl_per_dim_is_the_closed_form_against_the_models_own_prior():
    model, guide = make_vae(latent_dim=3)
    with torch.no_grad():  # a non-standard prior: the KL must come from the model trace, not N(0, I)
        model.prior_loc.copy_(torch.tensor([1.0, 0.0, -0.5]))
        model.prior_scale.copy_(torch.tensor([2.0, 1.0, 0.5]))
    x = torch.bernoulli(torch.full((10, 12), 0.4))
    kl = kl_per_dim(model, guide, x.split(3))
    mu, sigma = guide.encoder(x)
    expected = normal_kl(mu, sigma, model.prior_loc, model.prior_scale).mean(0)
    assert set(kl) == {"z"} and torch.allclose(kl["z"], expected, atol=1e-6)


def test_sites_without_a_factorized_kl_are_left_out():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.MultivariateNormal(torch.zeros(2), torch.eye(2)).expand([x.shape[0]]))
            w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[0], 4]).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True) + w, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(x[:, :2], 2 * torch.eye(2)))
            pyro.sample("w", dist.Normal(x, 2.0).to_event(1))

    x = torch.randn(5, 4)
    kl = kl_per_dim(model, guide, [x])
    assert set(kl) == {"w"}
    assert torch.allclose(kl["w"], normal_kl(x, torch.tensor(2.0), 0.0, torch.tensor(1.0)).mean(0))


@pytest.mark.parametrize(
    ("active", "kl", "collapsed"), [(0, 5.0, True), (3, 0.005, True), (3, 0.02, False), (1, 5.0, False)]
)
def test_collapse_needs_no_active_units_or_almost_no_kl(active: int, kl: float, collapsed: bool):
    assert (collapse_message(active, kl) is not None) == collapsed


@pytest.mark.parametrize(("family", "sites"), [("vae", ["z"]), ("ae", []), ("dae", [])])
def test_point_mass_guides_have_no_latent_that_can_collapse(family: str, sites: list[str]):
    _, guide = spec.build(family, data_dim=12)
    assert stochastic_latents(guide, torch.bernoulli(torch.full((4, 12), 0.5))) == sites


def test_stochastic_latents_leave_out_point_masses_and_masked_sites_only():
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("delta", dist.Delta(x, event_dim=1))
            pyro.sample("wrapped", dist.Delta(x).to_event(1))
            pyro.sample("normal", dist.Normal(x, 1.0).to_event(1))
            with poutine.mask(mask=False):
                pyro.sample("masked", dist.Normal(x, 1.0).to_event(1))
            with poutine.mask(mask=torch.tensor([True, False, False])):
                pyro.sample("partly_masked", dist.Normal(x, 1.0).to_event(1))

    assert stochastic_latents(guide, torch.randn(3, 2)) == ["normal", "partly_masked"]
