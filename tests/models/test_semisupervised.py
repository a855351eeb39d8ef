"""M2 (Kingma et al., 2014): a class label y that is a latent where unknown and observed where known."""

import math

import pytest
import torch
from pyro import poutine

from pyrovae import spec
from pyrovae.data import DataError, Dataset, hide_labels
from pyrovae.inference import iwae_bound, log_weights
from pyrovae.inference.log_weights import elbo_terms, sample_sites, site_log_prob
from pyrovae.runs import classifier_term

K, D = 4, 12


def m2() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return spec.build(spec.with_options(spec.load("m2"), hidden=(16,), latent_dim=(K, 3)), data_dim=D)


def supervised_elbo(model, guide, x: torch.Tensor, y: torch.Tensor, num_samples: int) -> torch.Tensor:
    """E_q(z | x, y)[log p(x | y, z) + log p(y) + log p(z) - log q(z | x, y)] with y fixed to the labels: ``(S, B)``,
    the supervised objective of Kingma et al., from the programs conditioned on y."""
    xs, ys = x.repeat(num_samples, 1), y.repeat(num_samples)
    guide_trace = poutine.trace(poutine.condition(guide, data={"y": ys})).get_trace(xs)
    model_trace = poutine.trace(poutine.replay(poutine.condition(model, data={"y": ys}), guide_trace)).get_trace(xs)
    log_p = sum(site_log_prob(s) for s in sample_sites(model_trace))
    log_q = sum(site_log_prob(s) for s in sample_sites(guide_trace) if not s["is_observed"])
    return (log_p - log_q).reshape(num_samples, -1)


def test_with_every_label_known_the_elbo_is_the_supervised_objective():
    model, guide = m2()
    x, y = torch.bernoulli(torch.full((3, D), 0.4)), torch.tensor([0, 3, 1])
    with torch.no_grad():
        log_px, log_ratio = elbo_terms(model, guide, x, y, num_particles=4000)
        ours = log_px - log_ratio  # (4000, 3)
        theirs = supervised_elbo(model, guide, x, y, 4000)
    stderr = (ours.var(0) / 4000 + theirs.var(0) / 4000).sqrt()
    assert ((ours.mean(0) - theirs.mean(0)).abs() < 4 * stderr).all()


@torch.no_grad()
def test_a_known_label_bounds_the_joint_and_an_unknown_one_the_marginal():
    model, guide = m2()
    x = torch.bernoulli(torch.full((2, D), 0.4)).repeat(200, 1)
    unknown = iwae_bound(model, guide, x, torch.full((400,), -1), num_particles=50).reshape(200, 2).mean(0)
    assert torch.allclose(unknown, iwae_bound(model, guide, x, num_particles=50).reshape(200, 2).mean(0), atol=0.05)
    joint = torch.stack(
        [iwae_bound(model, guide, x, torch.full((400,), c), num_particles=50).reshape(200, 2).mean(0) for c in range(K)]
    )  # log p(x, y = c), each below log p(x)
    assert (joint < unknown).all()
    assert torch.allclose(joint.logsumexp(0), unknown, atol=0.1)  # sum_c p(x, y = c) = p(x)


def test_the_classifier_term_is_log_q_of_the_known_labels_alone():
    _, guide = m2()
    x, y = torch.bernoulli(torch.full((4, D), 0.4)), torch.tensor([2, -1, 0, -1])
    logits = guide.conditionals["encoder_y"](x).logits
    expected = logits.log_softmax(-1)[0, 2] + logits.log_softmax(-1)[2, 0]
    torch.testing.assert_close(guide.log_q_known("y", x, y), expected)
    assert log_weights(*m2(), x, y, num_particles=2).shape == (2, 4)


@torch.no_grad()
def test_the_classifier_term_draws_labelled_digits_and_estimates_the_sum_over_all_of_them():
    """Each step's term is drawn from the labelled pool, whatever the step's batch; times the trainer's N / B it
    averages to -sum over every known label of log q(y | x)."""
    _, guide = m2()
    x = torch.bernoulli(torch.full((30, D), 0.4))
    labels = torch.full((30,), -1)
    labels[[3, 7, 11, 20, 28]] = torch.tensor([0, 1, 3, 3, 2])  # 5 known of N = 30
    fn = classifier_term("y", Dataset("toy", {"train": x}), labels, size=4)
    batch = torch.zeros(10, D)  # a step's batch of B = 10 without a known label: the term does not read it
    draws = torch.stack([fn(None, guide, batch) * (30 / 10) for _ in range(4000)])
    exact = -guide.log_q_known("y", x, labels)
    assert ((draws.mean() - exact).abs() < 4 * draws.std() / math.sqrt(4000)).all()
    assert draws.std() > 0.01  # drawn, not the same digits every step


def test_hidden_labels_keep_n_balanced_and_the_same_for_the_same_seed():
    labels = torch.arange(1000) % 10
    kept = hide_labels(labels, 103, seed=5, classes=10)
    assert int((kept >= 0).sum()) == 103 and ((kept == labels) | (kept == -1)).all()
    counts = torch.bincount(kept[kept >= 0], minlength=10)
    assert counts.tolist() == [11, 11, 11] + [10] * 7  # 103 = 10 per class, 3 classes one more
    assert torch.equal(kept, hide_labels(labels, 103, seed=5, classes=10))
    assert not torch.equal(kept, hide_labels(labels, 103, seed=6, classes=10))
    with pytest.raises(DataError, match="class 0 has 100 training datapoints, fewer than its 101"):
        hide_labels(labels, 1010, seed=0, classes=10)


def test_a_partially_observed_latent_must_be_categorical():
    table = spec.to_table(spec.load("m2"))
    table["latent"][1]["partially_observed"] = True
    with pytest.raises(spec.SpecError, match="only a categorical latent can be observed where its label is known"):
        spec.parse(table)
    assert math.isclose(len(spec.load("m2").labels), 1)
