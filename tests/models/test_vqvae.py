"""The VQ-VAE (models/vqvae.py, codebook.py, code_prior.py): quantization, the straight-through gradient, the
EMA formula, restarts, perplexity, the bound under the uniform and a learned prior, the PixelCNN's causality."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae.data import Dataset
from pyrovae.inference import TrainConfig, Trainer, evaluate_elbo, iwae_bound
from pyrovae.inference.parameters import evaluating
from pyrovae.models.code_prior import CodePixelCNN
from pyrovae.models.codebook import CodebookPrior, VectorQuantizer
from pyrovae.models.vqvae import bits_per_dim, code_usage, perplexity, vq_vae

from conftest import binary_images

SHAPE = (1, 8, 8)  # 8 x 8 images: a 2 x 2 grid of codes


def images(n: int = 40) -> torch.Tensor:
    return torch.as_tensor(binary_images(n, dim=64), dtype=torch.float32)


def test_quantization_picks_the_nearest_entry():
    vq = VectorQuantizer(16, 3)
    vq.codebook.normal_()
    z = torch.randn(5, 7, 3)
    indices = vq.nearest(z)
    brute = torch.cdist(z.reshape(-1, 3), vq.codebook).argmin(-1).reshape(5, 7)
    assert torch.equal(indices, brute) and torch.equal(vq.lookup(indices), vq.codebook[brute])


def test_the_straight_through_gradient_is_the_decoders_gradient_at_z_q():
    _, guide = vq_vae(SHAPE, codebook_size=8, code_dim=3)
    guide.quantizer.codebook.normal_()
    guide.quantizer.initialized.fill_(True)  # no start from encoder outputs: the test's codebook stays
    z_e = torch.randn(2, 4, 3, requires_grad=True)
    guide.encode = lambda x: z_e  # the encoder's output, a leaf
    with torch.no_grad():  # no codebook update: the test's z_q stays put
        z_q = guide.quantizer.lookup(guide.quantizer.nearest(z_e))
    value = poutine.trace(guide).get_trace(images(2)).nodes["z"]["value"]
    torch.testing.assert_close(value, z_q)
    c = torch.randn(2, 4, 3)
    (grad,) = torch.autograd.grad((c * value).sum() + value.pow(3).sum(), z_e)
    torch.testing.assert_close(grad, c + 3 * z_q**2)  # d/dz of the loss, at z = z_q


def test_the_ema_update_follows_its_formula_on_a_hand_made_batch():
    vq = VectorQuantizer(3, 2, decay=0.9, epsilon=0.01, restart_after=None)
    vq.initialized.fill_(True)  # the hand-made codebook below, not encoder outputs
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    vq.ema_sum.copy_(vq.codebook)  # counts 1: m_k = e_k
    z_e = torch.tensor([[0.1, 0.0], [0.9, 1.2], [1.1, 0.8], [0.0, -0.2]])  # picks 0, 1, 1, 0; entry 2 unused
    indices = vq.nearest(z_e)
    assert indices.tolist() == [0, 1, 1, 0]
    vq.update(z_e, indices)
    n = torch.tensor([2.0, 2.0, 0.0])
    s = torch.stack([z_e[[0, 3]].sum(0), z_e[[1, 2]].sum(0), torch.zeros(2)])
    count = 0.9 * torch.ones(3) + 0.1 * n
    total = count.sum()
    smoothed = (count + 0.01) / (total + 3 * 0.01) * total
    sums = 0.9 * torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]) + 0.1 * s
    torch.testing.assert_close(vq.ema_count, count)
    torch.testing.assert_close(vq.codebook, sums / smoothed.unsqueeze(-1))
    assert vq.idle.tolist() == [0, 0, 1]


def test_an_entry_unused_for_long_restarts_at_an_encoder_output():
    vq = VectorQuantizer(4, 2, restart_after=3)
    vq.initialized.fill_(True)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]]))
    vq.ema_sum.copy_(vq.codebook)  # counts 1: m_k = e_k
    z_e = torch.rand(10, 2)  # never near entry 3
    for _ in range(3):
        vq.update(z_e, vq.nearest(z_e))
    assert vq.idle[3] == 0 and any(torch.equal(vq.codebook[3], row) for row in z_e)


def test_the_first_update_starts_every_entry_at_an_encoder_output():
    vq = VectorQuantizer(5, 2, restart_after=None)
    z_e = 10 + torch.randn(50, 2)  # far from the starting range (-1/K, 1/K)
    vq.update(z_e, vq.nearest(z_e))
    assert vq.initialized and (vq.codebook > 5).all()  # each an encoder output, then moved by one EMA step


@pytest.mark.parametrize(("counts", "expected"), [(torch.ones(7), 7.0), (torch.tensor([0.0, 5.0, 0.0]), 1.0)])
def test_perplexity_is_k_for_uniform_usage_and_1_for_one_code(counts: torch.Tensor, expected: float):
    assert perplexity(counts) == pytest.approx(expected)


def test_the_bound_under_the_uniform_prior_is_the_reconstruction_minus_p_log_k():
    model, guide = vq_vae(SHAPE, codebook_size=8, code_dim=3)
    x = images(6)
    with evaluating(model, guide), torch.no_grad():
        z_q = guide.quantizer.lookup(guide.quantizer.nearest(guide.encode(x)))
        log_px = dist.Bernoulli(logits=model.logits(z_q)).log_prob(x).sum(-1)
        expected = log_px - 4 * math.log(8)  # P = 4 positions of K = 8 codes
        elbo = evaluate_elbo(model, guide, [x])
        torch.testing.assert_close(iwae_bound(model, guide, x, num_particles=5), expected)  # a point mass: L_k = L_1
    assert elbo["elbo"] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert elbo["kl"] == pytest.approx(4 * math.log(8), rel=1e-5)  # KL(delta || uniform) = P log K
    assert bits_per_dim(elbo["elbo"], 64) == pytest.approx(-elbo["elbo"] / (64 * math.log(2)))


def test_the_commitment_term_trains_and_is_absent_from_evaluation():
    model, guide = vq_vae(SHAPE, codebook_size=8, code_dim=3)
    assert "commitment" in poutine.trace(guide).get_trace(images(3)).nodes
    with evaluating(model, guide):
        assert "commitment" not in poutine.trace(guide).get_trace(images(3)).nodes
    x = images(60)
    data = Dataset("tiny", {"train": x[:40], "test": x[40:]}, image_shape=SHAPE)
    trainer = Trainer(model, guide, data, TrainConfig(batch_size=20), progress=False)
    first = trainer.train_epoch()
    for _ in range(4):
        last = trainer.train_epoch()
    assert last["train_elbo"] > first["train_elbo"]  # the true bound, without the commitment term
    assert last["kl"] == pytest.approx(4 * math.log(8))
    counts = code_usage(guide, [x])
    assert counts.sum() == 60 * 4 and 1 <= perplexity(counts) <= 8


def test_the_pixelcnn_is_causal_and_its_prior_sums_to_one_over_every_grid():
    torch.manual_seed(0)
    net = CodePixelCNN(3, (2, 2), channels=8, layers=2)
    k = torch.randint(3, (5, 4))
    logits = net(k)
    for p in range(4):  # changing the indices from p on leaves the logits up to p as they were
        changed = k.clone()
        changed[:, p:] = (changed[:, p:] + 1) % 3
        torch.testing.assert_close(net(changed)[:, : p + 1], logits[:, : p + 1])
    prior = CodebookPrior(VectorQuantizer(3, 2), 4, net)
    grids = torch.tensor(list(itertools.product(range(3), repeat=4)))  # all 81 grids
    assert prior.index_log_prob(grids).logsumexp(0).item() == pytest.approx(0.0, abs=1e-5)
    drawn = prior.expand([6]).sample()
    assert drawn.shape == (6, 4, 2)
    assert torch.equal(prior.quantizer.lookup(prior.quantizer.nearest(drawn)), drawn)  # codebook entries


def test_a_frozen_first_stage_trains_only_the_learned_prior():
    model, guide = vq_vae(SHAPE, codebook_size=8, code_dim=3)
    guide.freeze()
    model.decoder.requires_grad_(False)
    model.prior_logits = CodePixelCNN(8, model.grid, channels=8, layers=1)
    x = images(60)
    data = Dataset("tiny", {"train": x[:40], "test": x[40:]}, image_shape=SHAPE)
    before = {k: v.clone() for k, v in guide.state_dict().items()}
    trainer = Trainer(model, guide, data, TrainConfig(batch_size=20), progress=False)
    assert all(name.startswith("vq_prior") for name in trainer.params)
    rows = [trainer.train_epoch() for _ in range(5)]
    assert rows[-1]["kl"] < rows[0]["kl"] < 4 * math.log(8)  # the learned log p(z_q) beats -P log K
    assert all(torch.equal(v, guide.state_dict()[k]) for k, v in before.items())  # no EMA step, no restart
    assert "commitment" not in poutine.trace(guide).get_trace(x[:2]).nodes
    pyro.clear_param_store()


def test_compile_falls_back_with_one_warning_for_the_codebooks_update():
    from pyrovae.inference.compiled import CompileFallbackWarning

    model, guide = vq_vae(SHAPE, codebook_size=8, code_dim=3)
    x = images(60)
    data = Dataset("tiny", {"train": x[:40], "test": x[40:]}, image_shape=SHAPE)
    trainer = Trainer(model, guide, data, TrainConfig(batch_size=20, compile=True), progress=False)
    trainer.compiled.backend = None  # the trace alone fails: no compiler needed to show it
    with pyro.validation_enabled(False), pytest.warns(CompileFallbackWarning, match="reads a tensor's value"):
        trainer.step(x[:20], 1.0)
    assert bool(guide.quantizer.initialized)  # the eager step ran, and updated the codebook
