"""A discrete latent in a spec: a categorical y enumerated exactly, against the closed form of a linear
Gaussian mixture built by the spec machinery itself.

With every network linear, y ~ Cat(1/K), z | y ~ N(A one_hot(y) + a, diag s_y^2) and x | z ~ N(W z + b, r^2 I)
give x | y ~ N(W m_y + b, W diag(s_y^2) W^T + r^2 I), so log p(x) is a log-sum-exp over K Gaussians.
"""

import math

import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from pyrovae import families, spec
from pyrovae.inference import iwae_bound, log_weights
from pyrovae.inference.clustering import categorical_sites, clustering_accuracy
from pyrovae.inference.diagnostics import active_units, posterior_means
from pyrovae.inference.log_weights import elbo_terms, enumerated_sites
from pyrovae.inference.objectives import make_objective
from pyrovae.inference.parameters import evaluating
from pyrovae.inference.trace_elbo import TraceELBO, TraceGraphELBO

K, Z, D = 3, 2, 4
MIXTURE = f"""likelihood = "gaussian"
obs_scale = 0.7
hidden = []
[[latent]]
name = "y"
size = {K}
prior = "categorical"
encoder = {{ given = ["x"], family = "categorical" }}
[[latent]]
name = "z"
size = {Z}
given = ["y"]
encoder = {{ given = ["x", "y"] }}
[x]
given = ["z"]
size = {D}
"""


def mixture() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return spec.build(spec.tomllib.loads(MIXTURE))


def log_marginal(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of the built model from its own linear networks, ``(B,)``."""
    prior_z = model.conditionals["prior_z"](torch.eye(K))  # batch (K,): N(m_y, diag s_y^2)
    m, s = prior_z.base_dist.loc, prior_z.base_dist.scale  # (K, Z)
    decoder = model.conditionals["decoder"].decoder[0]  # x = W z + b, one Linear
    w, b = decoder.weight, decoder.bias  # (D, Z), (D,)
    cov = w @ torch.diag_embed(s**2) @ w.T + 0.7**2 * torch.eye(D)  # (K, D, D)
    components = torch.distributions.MultivariateNormal(m @ w.T + b, cov)
    return (components.log_prob(x[:, None, :]) - math.log(K)).logsumexp(-1)


def test_the_spec_enumerates_y_and_reads_it_one_hot():
    model, guide = mixture()
    assert families.get("categorical", "guide").capabilities.enumerable
    x = torch.randn(5, D)
    assert categorical_sites(guide, x) == ["y"]
    assert log_weights(model, guide, x, num_particles=3).shape == (3, 5)


@torch.no_grad()
def test_the_bounds_of_a_spec_built_mixture_rise_with_k_to_its_closed_form():
    model, guide = mixture()
    x = torch.randn(4, D).repeat(250, 1)  # many copies: means over them are the bounds' expectations
    truth = log_marginal(model, x).mean()
    bounds = [iwae_bound(model, guide, x, num_particles=k).mean() for k in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2] < truth
    assert truth - bounds[2] < 0.5 * (truth - bounds[0])


def test_the_enumerated_elbo_is_pyros_trace_enum_elbo_in_expectation():
    model, guide = mixture()
    x = torch.randn(3, D)
    log_px, log_ratio = elbo_terms(model, guide, x, num_particles=4000)
    per_particle = (log_px - log_ratio).sum(-1)  # (4000,): the batch's ELBO, one z per datapoint each
    ours, stderr = per_particle.mean(), per_particle.std() / math.sqrt(4000)
    pyros = -TraceEnum_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1).loss(model, guide, x)
    assert abs(ours.item() - pyros) < 4 * math.sqrt(2) * stderr.item()  # two estimates of one expectation
    assert (ours < log_marginal(model, x).sum()).item()


def test_discrete_sites_are_diagnosed_by_their_probabilities_not_a_nan_mean():
    _, guide = mixture()
    x = torch.randn(50, D) * 3
    means = posterior_means(guide, [x])
    assert means["y"].shape == (50, K) and torch.allclose(means["y"].sum(-1), torch.ones(50))
    assert set(active_units(guide, [x])) == {"y", "z"}


@pytest.mark.parametrize(
    ("clusters", "labels", "accuracy"),
    [
        ([2, 2, 0, 0, 1, 1], [0, 0, 1, 1, 2, 2], 1.0),  # a relabelling is perfect
        ([0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 2], 0.5),  # one cluster: the largest class
        ([0, 1, 2, 3, 3, 3], [0, 0, 1, 1, 1, 1], 4 / 6),  # more clusters than classes: one each is matched
    ],
)
def test_clustering_accuracy_matches_clusters_to_classes_one_to_one(clusters, labels, accuracy):
    assert clustering_accuracy(torch.tensor(clusters), torch.tensor(labels)) == pytest.approx(accuracy)


def test_a_discrete_latent_needs_a_discrete_prior_and_guide():
    with pytest.raises(spec.SpecError, match="a discrete latent needs a prior and guide of one kind"):
        spec.parse(spec.tomllib.loads(MIXTURE.replace('prior = "categorical"', 'prior = "normal"')))


def relaxed_mixture(estimator: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    temperature = "temperature = 0.3\n" if estimator != "score" else ""
    text = MIXTURE.replace('name = "y"\n', f'name = "y"\nestimator = "{estimator}"\n{temperature}')
    return spec.build(spec.tomllib.loads(text))


@pytest.mark.parametrize("estimator", ["relaxed", "straight-through"])
def test_a_relaxed_latent_trains_on_the_simplex_and_is_enumerated_when_evaluated(estimator: str):
    model, guide = relaxed_mixture(estimator)
    x = torch.randn(6, D)
    assert not enumerated_sites(model, guide, x)  # training: a reparameterized sample, nothing to sum
    y = poutine.trace(guide).get_trace(x).nodes["y"]
    assert y["fn"].has_rsample and y["value"].shape == (6, K) and torch.allclose(y["value"].sum(-1), torch.ones(6))
    one_hot = bool(((y["value"] == 0) | (y["value"] == 1)).all())
    assert one_hot == (estimator == "straight-through")  # rounded forward, relaxed backward
    loss = TraceELBO().differentiable_loss(model, guide, x)
    loss.backward()
    assert guide.conditionals["encoder_y"].net[0].weight.grad.abs().sum() > 0  # pathwise, through the sample
    discrete = mixture()  # the same networks (the same seed), y enumerated
    with evaluating(model, guide):  # the discrete model the relaxation trains: y summed exactly
        assert enumerated_sites(model, guide, x) == ["y"]
        torch.manual_seed(1)
        relaxed_bound = log_weights(model, guide, x, num_particles=5)
    torch.manual_seed(1)
    torch.testing.assert_close(relaxed_bound, log_weights(*discrete, x, num_particles=5).detach())
    assert model.training and guide.training  # restored


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("size = 3\nprior", "size = 3\ntemperature = 2\nprior"), "applies to estimator relaxed or straight-through"),
        (('size = 2\ngiven = ["y"]', 'size = 2\nestimator = "relaxed"\ngiven = ["y"]'), "apply to discrete latents"),
        (("size = 3\nprior", 'size = 3\nestimator = "rebar"\nprior'), "unknown 'rebar'; choose from enumerate"),
    ],
)
def test_estimators_are_checked_where_they_are_given(change, message: str):
    with pytest.raises(spec.SpecError, match=message):
        spec.parse(spec.tomllib.loads(MIXTURE.replace(*change)))


def test_a_score_function_latent_is_sampled_with_nvils_baseline_while_training():
    model, guide = relaxed_mixture("score")
    x = torch.randn(6, D)
    y = poutine.trace(guide).get_trace(x).nodes["y"]
    assert not y["fn"].has_rsample and y["value"].shape == (6,)  # a class, sampled: the score function's gradient
    baseline = y["infer"]["baseline"]
    assert baseline["nn_baseline"](baseline["nn_baseline_input"]).shape == (6,)  # b(x), one per datapoint
    trainer_objective = make_objective("elbo", baselines=True)
    assert isinstance(trainer_objective, TraceGraphELBO)
    loss = trainer_objective.differentiable_loss(model, guide, x)
    loss.backward()
    assert guide.baselines["y"][0].weight.grad.abs().sum() > 0  # the baseline is fitted in the same step
    with pytest.raises(ValueError, match="objective renyi needs a reparameterized guide"):
        make_objective("renyi", baselines=True)
    with evaluating(model, guide):
        assert enumerated_sites(model, guide, x) == ["y"]
