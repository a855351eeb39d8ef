"""The command line for disentanglement: sprites, beta-TCVAE and the capacity objective, evaluate --disentanglement."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from pyrovae import cli
from pyrovae.data import load_dataset

from conftest import one_error_line

SMALL = ["--hidden", "16", "--latent-dim", "4", "--batch-size", "50", "--epochs", "1", "--no-progress"]
SPRITES = ["--dataset", "sprites", "--data-size", "300"]
METRICS = ("mig", "beta_vae", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness")


@pytest.fixture(scope="module")
def sprites_run(tmp_path_factory) -> Path:
    """A 1-epoch beta-TCVAE on 300 sprites, shared by the module."""
    out = tmp_path_factory.mktemp("sprites") / "run"
    assert cli.main(["train", "--out", str(out), *SPRITES, *SMALL, "--objective", "tc-elbo", "--tc-weight", "4"]) == 0
    return out


@pytest.mark.filterwarnings("ignore::pyrovae.inference.diagnostics.PosteriorCollapseWarning")
def test_a_sprites_run_stores_its_options_and_evaluates_its_disentanglement(sprites_run: Path, capsys):
    config = json.loads((sprites_run / "config.json").read_text())
    assert (config["dataset"], config["data_size"]) == ("sprites", 300)
    assert config["train"]["objective_options"] == {"tc_weight": 4.0}
    capsys.readouterr()
    assert cli.main(["evaluate", str(sprites_run), "--k", "1", "--disentanglement"]) == 0
    assert "disentanglement: mig " in capsys.readouterr().out
    table = pd.read_csv(sprites_run / "disentanglement.csv")
    assert list(table.columns) == [*METRICS, "split", "images"]
    assert table["images"].item() == 30  # the test split: 10% of the 300
    assert ((table[list(METRICS)] >= 0) & (table[list(METRICS)] <= 1)).all(axis=None)


@pytest.mark.filterwarnings("ignore::pyrovae.inference.diagnostics.PosteriorCollapseWarning")
def test_the_capacity_objective_trains_and_resumes(tmp_path: Path):
    out = tmp_path / "run"
    capacity = ["--objective", "capacity", "--capacity", "5", "--capacity-steps", "10", "--gamma", "100"]
    assert cli.main(["train", "--out", str(out), *SPRITES, *SMALL, *capacity]) == 0
    options = json.loads((out / "config.json").read_text())["train"]["objective_options"]
    assert options == {"capacity": 5.0, "capacity_steps": 10, "gamma": 100.0}
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert len(pd.read_csv(out / "metrics.csv")) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--tc-weight", "4"], "--tc-weight is an option of --objective tc-elbo, not of elbo"),
        (["--objective", "capacity", "--beta", "4"], "--beta does not apply to objective capacity"),
        (["--dataset", "mnist-5k", "--data-size", "100"], "--data-size applies to --dataset sprites"),
        (["--data-size", "0"], "--data-size"),
        (["--objective", "capacity", "--capacity-steps", "0"], "--capacity-steps"),
        (["--model", "ae", "--objective", "capacity"], "this model's code is a point mass (an autoencoder)"),
        (["--guide", "full", "--objective", "tc-elbo"], "needs a guide that factorizes over the dimensions of z"),
        (["--model", "hvae", "--latent-dim", "4,2", "--objective", "tc-elbo"], "and this model has 2"),
        (
            ["--model", "gmvae", "--latent-dim", "3,2", "--objective", "capacity"],
            "needs reparameterized continuous latents",
        ),
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, capsys, options: list[str], message: str):
    args = ["train", "--out", str(tmp_path / "run"), "--dataset", "sprites", *SMALL, *options]
    assert message in one_error_line(capsys, 2, cli.main(args))


def test_a_data_size_is_a_number_or_all(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--out", str(tmp_path / "run"), "--dataset", "sprites", "--data-size", "many"])
    assert e.value.code == 2 and "expected a number of images or all, got 'many'" in capsys.readouterr().err


def test_disentanglement_needs_a_data_set_with_factors(trained, capsys):
    _, run = trained
    message = one_error_line(capsys, 2, cli.main(["evaluate", str(run), "--disentanglement"]))
    assert "trained on binarized-mnist, which has none" in message


def test_a_limited_evaluation_pairs_each_image_with_its_own_factors():
    """The factors of the seeded subset that the batches read, row for row: the labels (the shape) they carry
    equal the shape factor of the rows :meth:`Dataset.eval_subset` names."""
    data = load_dataset("sprites", size=300)
    labels = torch.cat([y for _, y in data.eval_batches("test", 7, limit=20, labels=True)])
    subset = data.eval_subset("test", 20)
    assert len(subset) == 20 and torch.equal(labels, data.factors_of("test")[subset][:, 0])
    assert data.eval_subset("test", 30) is None  # the whole split: all 30 rows, in order
