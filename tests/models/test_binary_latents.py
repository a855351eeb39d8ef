"""Binary latent units (a sigmoid belief net layer) in a spec: enumerated exactly when few, relaxed or sampled
with a score-function gradient when many, against the closed form of a linear model.

With h ~ Bern(sigmoid(c)) over H units and x | h ~ N(W h + b, r^2 I), log p(x) is a log-sum-exp over the
2^H values of h.
"""

import itertools
import math

import pandas as pd
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from pyrovae import cli, spec
from pyrovae.families.bernoulli import MAX_ENUMERATED_UNITS
from pyrovae.inference import iwae_bound, kl_per_dim, log_weights
from pyrovae.inference.diagnostics import active_units
from pyrovae.inference.log_weights import elbo_terms, enumerated_sites
from pyrovae.inference.objectives import make_objective
from pyrovae.inference.parameters import evaluating
from pyrovae.inference.vimco import VIMCO

H, D = 3, 4
LAYER = f"""likelihood = "gaussian"
obs_scale = 0.7
hidden = []
[[latent]]
name = "h"
size = {H}
prior = {{ family = "bernoulli", learn = true, logits = 0.4 }}
encoder = {{ given = ["x"], family = "bernoulli" }}
[x]
given = ["h"]
size = {D}
"""


def layer(estimator: str | None = None, size: int = H) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    text = LAYER.replace(f"size = {H}\n", f"size = {size}\n")
    if estimator is not None:
        text = text.replace('name = "h"\n', f'name = "h"\nestimator = "{estimator}"\n')
    return spec.build(spec.tomllib.loads(text))


def log_marginal(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of the built model from its prior and linear decoder, ``(B,)``."""
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=H)))  # (2^H, H)
    log_prior = model.conditionals["prior_h"]().log_prob(codes)  # (2^H,)
    decoder = model.conditionals["decoder"].decoder[0]  # x = W h + b, one Linear
    log_lik = torch.distributions.Normal(decoder(codes), 0.7).log_prob(x[:, None, :]).sum(-1)  # (B, 2^H)
    return (log_prior + log_lik).logsumexp(-1)


@torch.no_grad()
def test_few_units_are_enumerated_and_every_weight_is_the_marginal_likelihood():
    model, guide = layer()
    x = torch.randn(5, D)
    assert enumerated_sites(model, guide, x) == ["h"]  # the default estimator: 2^3 values summed exactly
    weights = log_weights(model, guide, x, num_particles=3)
    torch.testing.assert_close(weights, log_marginal(model, x).expand(3, 5))
    log_px, log_ratio = elbo_terms(model, guide, x)  # sum_h q(h | x) [...]: deterministic, below log p(x)
    elbo = (log_px - log_ratio).sum()
    assert float(elbo) == pytest.approx(-TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x), rel=1e-5)
    assert elbo < log_marginal(model, x).sum()


@torch.no_grad()
def test_sampled_units_are_importance_sampled_when_evaluated_and_the_bounds_rise_to_log_p():
    model, guide = layer("score")
    x = torch.randn(4, D).repeat(250, 1)  # many copies: means over them are the bounds' expectations
    with evaluating(model, guide):
        assert not enumerated_sites(model, guide, x)  # binary units trained by the score function are sampled
        bounds = [iwae_bound(model, guide, x, num_particles=k).mean() for k in (1, 10, 100)]
        enumerated = layer()  # the same networks, h summed: the ELBO that the sampled L_1 estimates
        log_px, log_ratio = elbo_terms(*enumerated, x)
    truth = log_marginal(model, x).mean()
    assert bounds[0] < bounds[1] < bounds[2] < truth
    assert truth - bounds[2] < 0.5 * (truth - bounds[0])
    assert abs(bounds[0] - (log_px - log_ratio).mean()) < 0.1  # 1000 draws of a spread of about 1 nat


@pytest.mark.parametrize("estimator", ["relaxed", "straight-through"])
def test_relaxed_units_train_inside_the_unit_cube(estimator: str):
    model, guide = layer(estimator)
    x = torch.randn(6, D)
    h = poutine.trace(guide).get_trace(x).nodes["h"]
    assert h["fn"].has_rsample and h["value"].shape == (6, H)
    binary = bool(((h["value"] == 0) | (h["value"] == 1)).all())
    assert binary == (estimator == "straight-through") and bool(((h["value"] >= 0) & (h["value"] <= 1)).all())
    with pyro.validation_enabled(False):  # a relaxed sample may round onto 0 or 1, as in training
        make_objective("iwae", num_particles=3).differentiable_loss(model, guide, x).backward()
    assert guide.conditionals["encoder_h"].net[0].weight.grad.abs().sum() > 0  # pathwise, through the sample


def test_a_score_function_layer_trains_by_nvil_or_vimco():
    model, guide = layer("score")
    x = torch.randn(6, D)
    h = poutine.trace(guide).get_trace(x).nodes["h"]
    assert not h["fn"].has_rsample and "baseline" in h["infer"]
    for objective in (make_objective("elbo", baselines=True), make_objective("iwae", num_particles=4, baselines=True)):
        guide.zero_grad()
        objective.differentiable_loss(model, guide, x).backward()
        assert guide.conditionals["encoder_h"].net[0].weight.grad.abs().sum() > 0
    assert isinstance(objective, VIMCO)


@torch.no_grad()
def test_binary_units_are_diagnosed_by_their_probabilities_and_their_kl_per_unit():
    model, guide = layer()
    x = torch.randn(50, D)
    kl = kl_per_dim(model, guide, [x])["h"]  # (H,): analytic Bernoulli KL per unit
    q = guide.conditionals["encoder_h"](x).base_dist
    p = model.conditionals["prior_h"]().base_dist
    exact = (q.probs * (q.probs / p.probs).log() + (1 - q.probs) * ((1 - q.probs) / (1 - p.probs)).log()).mean(0)
    torch.testing.assert_close(kl, exact)
    assert set(active_units(guide, [x])) == {"h"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ((f"size = {H}\n", "size = 200\n"), r"200 binary units have 2\^200 values, too many to enumerate"),
        (('prior = { family = "bernoulli", learn = true, logits = 0.4 }', 'prior = "normal"'), "of one kind"),
        (('name = "h"\n', 'name = "h"\npartially_observed = true\n'), "only a categorical latent can be observed"),
    ],
)
def test_binary_latents_are_checked_in_the_spec(change, message: str):
    with pytest.raises(spec.SpecError, match=message):
        spec.parse(spec.tomllib.loads(LAYER.replace(*change)))


def test_the_largest_enumerated_layer_is_enumerated_and_one_unit_more_is_refused():
    largest = LAYER.replace(f"size = {H}\n", f"size = {MAX_ENUMERATED_UNITS}\n")
    model, guide = spec.build(spec.tomllib.loads(largest))
    assert enumerated_sites(model, guide, torch.randn(2, D)) == ["h"]
    with pytest.raises(spec.SpecError, match="too many to enumerate"):
        spec.parse(spec.tomllib.loads(LAYER.replace(f"size = {H}\n", f"size = {MAX_ENUMERATED_UNITS + 1}\n")))


SBN = """likelihood = "bernoulli"
[[latent]]
name = "h"
size = 20
estimator = "score"
prior = { family = "bernoulli", learn = true }
encoder = { given = ["x"], hidden = [], family = "bernoulli" }
[x]
given = ["h"]
hidden = []
"""


@pytest.mark.parametrize("objective", [["--objective", "elbo"], ["--objective", "iwae", "--particles", "3"]])
def test_a_sigmoid_belief_net_trains_from_the_command_line(amat_dir, tmp_path, capsys, objective):
    (tmp_path / "sbn.toml").write_text(SBN)
    out = tmp_path / "run"
    data = ["--dataset", "binarized-mnist", "--data-dir", str(amat_dir), "--batch-size", "40", "--no-progress"]
    argv = ["train", "--out", str(out), *data, "--spec", str(tmp_path / "sbn.toml"), "--epochs", "2", *objective]
    assert cli.main(argv) == 0
    assert cli.main(["evaluate", str(out), "--k", "1,20"]) == 0
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")["bound"]
    assert math.isfinite(bounds[1]) and bounds[20] > bounds[1]  # h importance-sampled: L_k rises with k
