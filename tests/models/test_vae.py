import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from conftest import make_vae


def test_model_sites_shapes_and_plate():
    model, _ = make_vae()
    x = torch.bernoulli(torch.full((5, 12), 0.5))
    trace = poutine.trace(model).get_trace(x)
    trace.compute_log_prob()
    z, obs = trace.nodes["z"], trace.nodes["x"]
    assert z["value"].shape == (5, 3) and z["fn"].batch_shape == (5,) and z["fn"].event_shape == (3,)
    assert obs["is_observed"] and obs["fn"].batch_shape == (5,) and obs["fn"].event_shape == (12,)
    for site in (z, obs):
        (frame,) = site["cond_indep_stack"]
        assert (frame.name, frame.dim, frame.size) == ("data", -1, 5)
        assert site["log_prob"].shape == (5,)


def test_num_data_scales_by_n_over_b():
    model, _ = make_vae()
    x = torch.bernoulli(torch.full((5, 12), 0.5))
    plain = poutine.trace(model).get_trace(x)
    scaled = poutine.trace(poutine.replay(model, trace=plain)).get_trace(x, num_data=40)
    assert scaled.nodes["x"]["scale"] == pytest.approx(8.0)
    assert scaled.log_prob_sum().item() == pytest.approx(8.0 * plain.log_prob_sum().item(), rel=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
def test_beta_scales_only_the_latent_site(beta: float):
    model, guide = make_vae()
    x = torch.bernoulli(torch.full((5, 12), 0.5))
    for fn in (model, guide):
        site = poutine.trace(fn).get_trace(x, beta=beta).nodes["z"]
        if beta == 0:
            assert site["mask"] is False
        else:
            assert site["scale"] == beta
    assert poutine.trace(model).get_trace(x, beta=beta).nodes["x"]["scale"] == 1.0


def test_negative_beta_is_rejected():
    model, _ = make_vae()
    with pytest.raises(ValueError, match="beta must be >= 0"):
        model(torch.zeros(2, 12), beta=-1.0)


def test_works_with_predictive_and_generates_without_data():
    model, guide = make_vae()
    x = torch.bernoulli(torch.full((5, 12), 0.5))
    posterior = Predictive(model, guide=guide, num_samples=4, return_sites=["z"])(x)
    assert posterior["z"].shape == (4, 5, 3)
    prior = Predictive(model, num_samples=2)(None, batch_size=7)
    assert prior["x"].shape == (2, 7, 12) and set(prior["x"].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="batch_size"):
        model()


def test_model_params_are_registered_under_module_names():
    model, guide = make_vae()
    x = torch.zeros(2, 12)
    guide(x)
    model(x)
    names = set(pyro.get_param_store().keys())
    assert {n.split("$$$")[0] for n in names} == {"encoder", "decoder"}
    assert len(names) == len(list(model.parameters())) + len(list(guide.parameters()))
