"""Every built-in family x guide x architecture: sites and plates of model and guide, a few steps with every
objective, log-weights and the IWAE bound."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyrovae import spec
from pyrovae.data import Dataset
from pyrovae.inference import OBJECTIVES, TrainConfig, Trainer, active_units, iwae_bound, log_weights, make_objective
from pyrovae.validate import UsageError, check_spread_objective

from conftest import binary_images


def guides(name: str) -> tuple[str, ...]:
    """The guides a family trains with: diagonal and full-covariance Normal, or the autoencoders' point mass."""
    return ("delta",) if spec.load(name).guide == "delta" else ("diag", "full")


FAMILIES = [(name, arch, guide) for name in spec.BUILTIN for guide in guides(name) for arch in ("mlp", "conv")]


def build(name: str, arch: str = "mlp", guide: str | None = None, **options):
    """The family's model and guide for 16-pixel 4 x 4 images, small networks, 3 dimensions per latent."""
    s = spec.with_options(
        spec.load(name),
        arch=arch,
        guide=guide,
        hidden=(8,),
        latent_dim=(3,) * len(spec.load(name).latents),
        **options,
    )
    return spec.build(s, data_dim=16, image_shape=(1, 4, 4))


def labelled_data() -> Dataset:
    x = torch.as_tensor(binary_images(60, dim=16), dtype=torch.float32)
    y = torch.arange(60) % 10
    return Dataset("tiny", {"train": x[:40], "test": x[40:]}, {"train": y[:40], "test": y[40:]}, image_shape=(1, 4, 4))


def sample_sites(trace) -> list[dict]:
    return [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]


@pytest.mark.parametrize(("name", "arch", "guide_family"), FAMILIES)
def test_sites_are_in_the_data_plate_with_their_shapes(name: str, arch: str, guide_family: str):
    model, guide = build(name, arch, guide_family)
    args = (torch.bernoulli(torch.full((5, 16), 0.5)), *([torch.arange(5)] if model.inputs else []))
    guide_trace = poutine.trace(guide).get_trace(*args)
    guide_trace.compute_log_prob()
    trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    trace.compute_log_prob()
    assert [s["name"] for s in sample_sites(trace)] == [*model.inputs, *(n.site for n in model.latents), "x"]
    assert sorted(s["name"] for s in sample_sites(guide_trace)) == sorted(n.site for n in model.latents)
    kind = {"diag": "Independent", "full": "MultivariateNormal", "delta": "Delta"}[guide_family]
    for site in sample_sites(guide_trace):
        if type(site["fn"]).__name__ == "Categorical":  # a discrete latent (the gmvae's y): class indices
            assert site["value"].shape == (5,) and site["fn"].batch_shape == (5,) and site["fn"].event_shape == ()
            continue
        assert type(site["fn"]).__name__ == kind and site["value"].shape == (5, 3)
        assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (3,)
        assert [(f.name, f.dim, f.size) for f in site["cond_indep_stack"]] == [("data", -1, 5)]
        assert site["log_prob"].shape == (5,)
        assert torch.equal(trace.nodes[site["name"]]["value"], site["value"])  # the model replays the guide's z
    for site in sample_sites(trace):
        discrete = type(site["fn"]).__name__ == "Categorical" or site["name"] in model.inputs
        event = (16,) if site["name"] == "x" else () if discrete else (3,)
        assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == event
        assert [(f.name, f.dim, f.size) for f in site["cond_indep_stack"]] == [("data", -1, 5)]
        assert site["log_prob"].shape == (5,)
        if site["name"] in model.inputs:  # an input: observed at the label, no density (p(x | y) is conditional)
            assert torch.equal(site["value"], args[1]) and torch.equal(site["log_prob"], torch.zeros(5))


# every family and guide with every objective (MLPs), and every family with convolutional networks (one objective,
# its spec's guide; the sites test covers conv x full); mf-elbo needs a mean-field guide, which the hierarchical
# q(z2 | z1) is not (pyrovae train refuses it: tests/core/test_cli_models.py)
def takes(name: str, guide: str, objective: str) -> bool:
    """Whether ``pyrovae train`` accepts the objective for the family with this guide (tc-elbo and capacity
    need a reparameterized continuous posterior, tc-elbo one factorized latent)."""
    try:
        check_spread_objective(objective, spec.with_options(spec.load(name), guide=guide))
    except UsageError:
        return False
    return objective != "mf-elbo" or spec.load(name).mean_field


TRAINING = [
    (name, "mlp", guide, objective)
    for name in spec.BUILTIN
    for guide in guides(name)
    for objective in OBJECTIVES
    if takes(name, guide, objective)
]
REFUSED = [
    (name, guide, objective)
    for name in spec.BUILTIN
    for guide in guides(name)
    for objective in ("tc-elbo", "capacity")
    if not takes(name, guide, objective)
]
TRAINING += [(name, "conv", guides(name)[0], "elbo") for name in spec.BUILTIN]


@pytest.mark.parametrize(("name", "guide_family", "objective"), REFUSED)
def test_objectives_that_the_command_line_refuses_refuse_the_model_too(name: str, guide_family: str, objective: str):
    """What the command line refuses up front (pyrovae.validate), the objective refuses in one error too."""
    model, guide = build(name, "mlp", guide_family)
    data = labelled_data()
    batch = next(data.eval_batches("test", 7, labels=bool(model.inputs)))
    args = batch if isinstance(batch, tuple) else (batch,)
    with pytest.raises((NotImplementedError, ValueError)):
        make_objective(objective).differentiable_loss(model, guide, *args)


@pytest.mark.parametrize(("name", "arch", "guide_family", "objective"), TRAINING)
def test_trains_with_every_objective_and_gives_log_weights_and_bounds(
    name: str, arch: str, guide_family: str, objective: str
):
    model, guide = build(name, arch, guide_family)
    data = labelled_data()
    trainer = Trainer(
        model,
        guide,
        data,
        TrainConfig(batch_size=20, objective=objective, objective_options={"num_particles": 2}),
        progress=False,
        labels=bool(model.inputs),
    )
    before = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    losses = [
        trainer.step(batch, beta=1.0) for batch in data.train_batches(20, torch.Generator(), labels=bool(model.inputs))
    ]
    assert all(torch.isfinite(loss) for loss in losses)
    assert any(not torch.equal(before[k], v) for k, v in pyro.get_param_store().items())
    batch = next(data.eval_batches("test", 7, labels=bool(model.inputs)))
    args = batch if isinstance(batch, tuple) else (batch,)
    torch.manual_seed(1)
    log_w = log_weights(model, guide, *args, num_particles=4)
    assert log_w.shape == (4, 7) and torch.all(torch.isfinite(log_w))
    torch.manual_seed(1)  # the same particles
    bound = iwae_bound(model, guide, *args, num_particles=4)
    assert bound.shape == (7,) and torch.allclose(bound, log_w.logsumexp(0) - math.log(4))


def test_hierarchical_model_is_the_iwae_architecture_with_active_units_per_layer():
    model, guide = spec.build("hvae", data_dim=784)
    assert [n.site for n in model.latents] == ["z2", "z1"] and [n.site for n in guide.nodes] == ["z1", "z2"]
    assert [n.parents for n in model.nodes] == [(), ("z2",), ("z1",)] and not spec.load("hvae").mean_field
    widths = {
        k: [m.out_features for m in c.modules() if isinstance(m, torch.nn.Linear)]
        for k, c in model.conditionals.items()
    }
    widths |= {
        k: [m.out_features for m in c.modules() if isinstance(m, torch.nn.Linear)]
        for k, c in guide.conditionals.items()
    }
    assert widths == {
        "prior_z2": [],
        "prior_z1": [100, 100, 200],
        "decoder": [200, 200, 784],
        "encoder_z1": [200, 200, 200],
        "encoder_z2": [100, 100, 100],
    }
    units = active_units(guide, [torch.bernoulli(torch.full((50, 784), 0.3))])
    assert set(units) == {"z1", "z2"}


def test_cvae_samples_change_with_the_label():
    model, _ = build("cvae")
    with torch.no_grad():
        means = [
            model.conditionals["decoder"](
                torch.zeros(1, 3), torch.nn.functional.one_hot(torch.tensor([y]), 10).float()
            ).mean
            for y in range(10)
        ]
    assert all(not torch.allclose(means[0], m) for m in means[1:])
    draws = poutine.trace(model).get_trace(None, torch.full((4,), 3))
    assert draws.nodes["x"]["value"].shape == (4, 16)
    with pytest.raises(ValueError, match="conditions on y"):
        model(torch.zeros(2, 16), torch.arange(2), torch.arange(2))


@pytest.mark.parametrize("handler", [poutine.condition, poutine.do])
def test_a_cvae_label_is_a_site_to_condition_or_intervene_on(handler):
    model, guide = build("cvae")
    y = torch.tensor([3, 3, 7, 7])
    given = poutine.trace(model).get_trace(None, y)  # the label passed
    drawn = poutine.trace(model).get_trace(batch_size=4)  # the label left out: drawn uniformly, a site
    assert drawn.nodes["y"]["value"].shape == (4,) and not drawn.nodes["y"]["is_observed"]
    x0 = given.nodes["x"]["value"]
    for label, same in ((y, True), (torch.tensor([0, 1, 2, 4]), False)):
        # z of the run given y: p(x | z, label) is p(x | z, y) exactly when the handler set y
        pinned = poutine.condition(handler(model, data={"y": label}), data={"z": given.nodes["z"]["value"]})
        replayed = poutine.trace(pinned).get_trace(batch_size=4)
        log_p = replayed.nodes["x"]["fn"].log_prob(x0)
        assert torch.allclose(log_p, given.nodes["x"]["fn"].log_prob(x0)) == same
    x = torch.bernoulli(torch.full((4, 16), 0.5))
    guide_trace = poutine.trace(guide).get_trace(x, y)
    conditioned = poutine.trace(poutine.replay(poutine.condition(model, data={"y": y}), trace=guide_trace))
    passed = poutine.trace(poutine.replay(model, trace=guide_trace))
    # the same log p(x, z | y): the label adds no density however it is set
    assert torch.allclose(conditioned.get_trace(x).log_prob_sum(), passed.get_trace(x, y).log_prob_sum())
