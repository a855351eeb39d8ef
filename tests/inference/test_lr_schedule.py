"""Learning-rate schedules: a factor of the epoch alone, applied by the trainer to its optimizer's base rates."""

import math

import pyro
import pytest

from pyrovae.data import Dataset
from pyrovae.errors import FieldError
from pyrovae.inference import TrainConfig, Trainer
from pyrovae.inference.lr_schedule import parse_lr_schedule

from conftest import make_vae


@pytest.mark.parametrize(
    ("spec", "factors"),
    [
        ("constant", [1.0, 1.0, 1.0, 1.0]),
        ("cosine", [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]),
        ("step:2:0.5", [1.0, 1.0, 0.5, 0.5]),
        ("step:1:0.1", [1.0, 0.1, 0.01, 0.001]),
    ],
)
def test_a_schedule_is_a_factor_of_the_epoch(spec: str, factors: list[float]):
    schedule = parse_lr_schedule(spec)
    assert [schedule(epoch, 4) for epoch in range(1, 5)] == pytest.approx(factors)


@pytest.mark.parametrize("spec", ["linear", "step:0:0.5", "step:2", "step:2:-1", "step:x:0.5", "cosine:3"])
def test_an_unknown_schedule_names_the_accepted_forms(spec: str):
    with pytest.raises(ValueError, match="constant, cosine, step:EVERY:GAMMA"):
        parse_lr_schedule(spec)
    with pytest.raises(FieldError, match="lr_schedule"):
        TrainConfig(lr_schedule=spec)


def test_the_trainer_sets_each_epochs_rate_and_a_resumed_trainer_continues_it(small_data: Dataset):
    def trainer() -> Trainer:
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model, guide = make_vae(data_dim=small_data.data_dim, latent_dim=2, hidden=(16,))
        config = TrainConfig(epochs=3, batch_size=16, lr=1e-2, eval_batch_size=25, lr_schedule="step:1:0.5")
        return Trainer(model, guide, small_data, config, progress=False)

    straight = trainer()
    rates = []
    for _ in range(3):
        straight.train_epoch()
        rates.append(straight.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-2, 5e-3, 2.5e-3])
    first = trainer()
    first.train_epoch()
    resumed = trainer()
    resumed.load_state_dict(first.state_dict())
    resumed.train_epoch()  # epoch 2 of the schedule, not epoch 1 again
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)


def test_the_command_line_refuses_an_unknown_schedule_in_one_line(tmp_path, capsys):
    from pyrovae import cli

    assert cli.main(["train", "--out", str(tmp_path / "run"), "--lr-schedule", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lr-schedule unknown learning-rate schedule 'bogus'" in err
    assert not (tmp_path / "run").exists()
