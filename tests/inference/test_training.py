import math
import warnings

import pyro
import pytest
import torch
from pyro.distributions.kl import kl_divergence

from pyrovae.data import Dataset
from pyrovae.inference import TrainConfig, Trainer
from pyrovae.inference.diagnostics import PosteriorCollapseWarning
from pyrovae.primitives import data_plate

from conftest import binary_images, make_vae

CONFIG = TrainConfig(epochs=2, batch_size=16, lr=1e-2, eval_batch_size=25)


def make_trainer(data: Dataset, seed: int = 0, latent_dim: int = 2, **options) -> Trainer:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model, guide = make_vae(data_dim=data.data_dim, latent_dim=latent_dim, hidden=(16,))
    return Trainer(model, guide, data, TrainConfig(**{**vars(CONFIG), **options}), progress=False)


@pytest.mark.parametrize("objective", ["elbo", "mf-elbo"])
def test_epoch_records_every_metric_and_learns(small_data: Dataset, objective: str):
    trainer = make_trainer(small_data, objective=objective, particles=3, epochs=8)
    rows = [trainer.train_epoch() for _ in range(8)]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    for r in rows:
        assert r["train_elbo"] == pytest.approx(r["reconstruction"] - r["kl"])
        assert r["seconds"] > 0 and r["beta"] == 1.0 and math.isfinite(r["test_elbo"])
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"] + 1.0


@pytest.mark.parametrize("beta", [0.0, 0.25])
def test_test_elbo_is_the_true_elbo_whatever_the_training_beta(beta: float):
    x = torch.as_tensor(binary_images(460, dim=16), dtype=torch.float32)
    data = Dataset("tiny", {"train": x[:60], "test": x[60:]})
    trainer = make_trainer(data, beta=beta, epochs=5, latent_dim=4)
    row = [trainer.train_epoch() for _ in range(5)][-1]
    # an independent estimate of E_q[log p(x|z)] - KL(q || p) on the test split
    test = data.splits["test"]
    q = trainer.guide.posterior(test)
    kl = kl_divergence(q, trainer.model.prior(test.shape[0]))
    single = trainer.model.likelihood(q.rsample()).log_prob(test) - kl  # what one-sample evaluation draws
    expected = trainer.model.likelihood(q.rsample((100,))).log_prob(test).mean() - kl.mean()
    se = single.std().item() / test.shape[0] ** 0.5
    assert row["test_elbo"] == pytest.approx(expected.item(), abs=4 * se)
    # reporting recon - beta * KL instead would be off by |1 - beta| * KL, far outside the tolerance
    assert abs(1 - beta) * kl.mean().item() > 8 * se


def test_beta_zero_trains_without_a_kl_penalty(small_data: Dataset):
    free, penalised = make_trainer(small_data, beta=0.0, epochs=6), make_trainer(small_data, epochs=6)
    rows = [(free.train_epoch(), penalised.train_epoch()) for _ in range(6)]
    assert all(a["beta"] == 0.0 and math.isfinite(a["train_loss"]) for a, _ in rows)
    assert rows[-1][0]["kl"] > 2 * rows[-1][1]["kl"]


def test_annealed_beta_is_reported_at_the_end_of_the_epoch(small_data: Dataset):
    trainer = make_trainer(small_data, kl_anneal="linear:8")  # 4 steps per epoch
    assert [trainer.train_epoch()["beta"] for _ in range(2)] == [3 / 8, 7 / 8]


def test_state_dict_round_trip_continues_identically(small_data: Dataset):
    straight = make_trainer(small_data)
    expected = [straight.train_epoch(), straight.train_epoch()]
    first = make_trainer(small_data)
    first.train_epoch()
    state = first.state_dict()
    resumed = make_trainer(small_data, seed=123)  # different initialisation, then restored
    resumed.load_state_dict(state)
    resumed.train_epoch()
    assert [untimed(r) for r in resumed.history] == [untimed(r) for r in expected]


def untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seconds"}


def test_stale_param_store_is_reported(small_data: Dataset):
    make_trainer(small_data)
    model, guide = make_vae(data_dim=small_data.data_dim, latent_dim=2, hidden=(16,))
    with pytest.raises(RuntimeError, match="clear_param_store"):
        Trainer(model, guide, small_data, CONFIG, progress=False)


def test_epoch_records_active_units_and_the_analytic_kl_per_dimension(small_data: Dataset):
    trainer = make_trainer(small_data, latent_dim=3, epochs=6)
    row = [trainer.train_epoch() for _ in range(6)][-1]
    test = small_data.splits["test"]
    means = trainer.guide.encoder(test)[0]
    assert row["active_units"] == int((means.var(0) > 0.01).sum()) > 0
    kl = kl_divergence(trainer.guide.posterior(test).base_dist, trainer.model.prior(len(test)).base_dist).mean(0)
    assert row["kl_per_dim"]["z"] == pytest.approx(kl.tolist(), abs=1e-6)


def test_collapse_warning_fires_once_for_a_guide_equal_to_the_prior(small_data: Dataset):
    model, _ = make_vae(data_dim=small_data.data_dim, latent_dim=2, hidden=(16,))

    def prior_guide(x, *, beta=1.0, num_data=None):  # q(z | x) = p(z) for every x
        with data_plate(x.shape[0], num_data, x.device):
            pyro.sample("z", model.prior(x.shape[0]))

    trainer = Trainer(model, prior_guide, small_data, CONFIG, progress=False)
    with pytest.warns(PosteriorCollapseWarning, match="epoch 1: posterior collapse: 0 active units") as caught:
        rows = [trainer.train_epoch() for _ in range(2)]
    assert len(caught) == 1  # said once, not again while it stays collapsed
    assert rows[-1]["kl_per_dim"] == {"z": [0.0, 0.0]}


def test_no_collapse_warning_for_a_trained_vae():
    x = torch.as_tensor(binary_images(460, dim=16), dtype=torch.float32)
    trainer = make_trainer(Dataset("tiny", {"train": x[:400], "test": x[400:]}), epochs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)
        rows = [trainer.train_epoch() for _ in range(4)]
    assert rows[-1]["active_units"] == 2 and sum(rows[-1]["kl_per_dim"]["z"]) > 0.5  # uses both units
