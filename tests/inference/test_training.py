import math
import warnings

import pyro
import pytest
import torch
from pyro.distributions.kl import kl_divergence
from pyro.infer import SVI

from pyrovae.data import Dataset
from pyrovae.inference import Diverged, TrainConfig, Trainer
from pyrovae.inference.diagnostics import PosteriorCollapseWarning
from pyrovae.inference.objectives import make_objective
from pyrovae.inference.parameters import load_params
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
    trainer = make_trainer(small_data, objective=objective, objective_options={"num_particles": 3}, epochs=8)
    rows = [trainer.train_epoch() for _ in range(8)]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    for r in rows:
        assert r["train_elbo"] == pytest.approx(r["reconstruction"] - r["kl"])
        assert r["seconds"] > 0 and r["beta"] == 1.0 and math.isfinite(r["test_elbo"])
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"] + 1.0


@pytest.mark.parametrize("objective, particles", [("elbo", 1), ("mf-elbo", 3), ("iwae", 5)])
def test_trainer_steps_are_pyro_svi_steps(objective: str, particles: int):
    # the trainer's one fused Adam against Pyro's SVI with its Adam per parameter: same seed, float64
    x = torch.as_tensor(binary_images(64, dim=12), dtype=torch.float64)
    data = Dataset("tiny", {"train": x[:48], "test": x[48:]})
    model, guide = (m.double() for m in make_vae(data_dim=12, latent_dim=2, hidden=(16,)))
    config = TrainConfig(batch_size=16, lr=1e-2, objective=objective, objective_options={"num_particles": particles})
    trainer = Trainer(model, guide, data, config, progress=False)
    initial = {name: p.detach().clone() for name, p in trainer.params.items()}
    pyro.set_rng_seed(1)
    losses = [trainer.step(x[i : i + 16], 1.0).item() for i in (0, 16, 32)]
    trained = {name: p.detach().clone() for name, p in trainer.params.items()}

    load_params(initial)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), make_objective(objective, num_particles=particles))
    pyro.set_rng_seed(1)
    svi_losses = [svi.step(x[i : i + 16], beta=1.0, num_data=48) for i in (0, 16, 32)]
    assert losses == pytest.approx(svi_losses, rel=1e-12)
    for name, p in pyro.get_param_store().named_parameters():
        assert not torch.equal(p, initial[name]) and torch.allclose(p, trained[name], rtol=0, atol=1e-12), name


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


def nan_at(trainer: Trainer, bad_step: int) -> list[float]:
    """Make ``trainer.step`` return NaN at global step ``bad_step`` (1-based); returns the losses it gave."""
    real, losses = trainer.step, []

    def step(x, beta):
        loss = real(x, beta)
        losses.append(math.nan if len(losses) + 1 == bad_step else loss.item())
        return torch.tensor(losses[-1])

    trainer.step = step
    return losses


@pytest.mark.parametrize(("bad_step", "log_every"), [(7, 2), (8, 2), (5, 50), (1, 3)])
def test_nan_loss_is_reported_at_its_step_with_the_last_finite_loss(small_data, bad_step: int, log_every: int):
    trainer = make_trainer(small_data, log_every=log_every)  # 60 rows / 16: 4 steps per epoch
    losses = nan_at(trainer, bad_step)
    with pytest.raises(Diverged) as e:
        for _ in range(3):
            trainer.train_epoch()
    assert (e.value.step, e.value.epoch) == (bad_step, (bad_step - 1) // 4 + 1)
    last = None if bad_step == 1 else losses[bad_step - 2] / 60  # per datapoint
    assert e.value.last_finite_loss == (pytest.approx(last) if last else None)
    assert trainer.epoch == (bad_step - 1) // 4  # the diverged epoch is not recorded


def test_non_finite_parameters_at_the_epoch_end_are_caught(small_data):
    trainer = make_trainer(small_data)
    real, calls = trainer.step, []

    def step(x, beta):  # the epoch's last update overflows: every loss reported was finite
        calls.append(1)
        loss = real(x, beta)
        if len(calls) == trainer.steps_per_epoch:
            with torch.no_grad():
                next(trainer.guide.parameters()).fill_(math.inf)
        return loss

    trainer.step = step
    with pytest.raises(Diverged, match="at step 4 \\(epoch 1\\)"):
        trainer.train_epoch()


def test_stop_abandons_the_epoch(small_data):
    trainer = make_trainer(small_data)
    calls = []
    assert trainer.train_epoch(stop=lambda: calls.append(1) or len(calls) == 2) is None
    assert trainer.epoch == 0 and len(calls) == 2  # polled after each step, stopped after the second


@pytest.mark.parametrize("clip_norm", [None, 0.5])
def test_clip_norm_bounds_the_global_gradient_norm(small_data, clip_norm):
    trainer = make_trainer(small_data, clip_norm=clip_norm)
    norms = []

    def record(optimizer, args, kwargs):  # runs just before Adam's update
        grads = [p.grad.norm() for group in optimizer.param_groups for p in group["params"]]
        norms.append(torch.linalg.vector_norm(torch.stack(grads)).item())

    trainer.optimizer.register_step_pre_hook(record)
    trainer.step(small_data.splits["train"][:16], 1.0)
    # the loss is 60 x the per-datapoint mean, so its gradient norm is bounded by 60 x clip_norm
    assert norms[0] == pytest.approx(0.5 * 60) if clip_norm else norms[0] > 4 * 0.5 * 60


def test_resumed_trainer_uses_its_own_learning_rate(small_data):
    first = make_trainer(small_data)
    first.train_epoch()
    resumed = make_trainer(small_data, lr=0.5)
    resumed.load_state_dict(first.state_dict())
    for name, p in resumed.params.items():  # Adam's moments are restored before any step
        assert torch.equal(resumed.optimizer.state[p]["exp_avg"], first.optimizer.state[first.params[name]]["exp_avg"])
    with warnings.catch_warnings():  # lr 0.5 may collapse the tiny posterior: not what this test is about
        warnings.simplefilter("ignore", PosteriorCollapseWarning)
        resumed.train_epoch()
    assert all(g["lr"] == 0.5 for g in resumed.optimizer.param_groups)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"log_every": 0}, "log_every must be a positive integer, got 0"),
        ({"epochs": 2.0}, "epochs must be an integer, got 2.0"),
        ({"seed": 2**32}, "seed must be in 0 .. 4294967295"),
        ({"beta": 1e39}, "beta must be a finite number that float32 can hold"),
        ({"objective": "renyi", "objective_options": {"alpha": 1.0}}, "objective_options.alpha must not be 1"),
        ({"objective": "ewae"}, "objective must be one of elbo, mf-elbo, iwae, renyi, tc-elbo, capacity, got 'ewae'"),
        ({"kl_anneal": "linear:0"}, "kl_anneal linear:0: STEPS must be a positive integer"),
    ],
)
def test_train_config_refuses_settings_that_cannot_work(options: dict, message: str):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        TrainConfig(**options)
