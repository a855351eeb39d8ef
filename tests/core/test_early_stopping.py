"""A validation split monitored per epoch (the test split left to evaluate), --valid-fraction and
--early-stopping PATIENCE keeping the best epoch in best.pt."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from pyrovae import cli, load
from pyrovae.checkpoint import load_checkpoint
from pyrovae.data import DataError, Dataset, load_dataset
from pyrovae.errors import FieldError
from pyrovae.inference import TrainConfig, Trainer

from conftest import SMALL, make_vae, one_error_line, train


def test_a_validation_split_is_held_out_of_the_training_split():
    x, y = torch.rand(50, 12), torch.arange(50) % 5
    data = Dataset.from_tensors(x[:40], x[40:], labels={"train": y[:40], "test": y[40:]}, binarize=True)
    held = data.with_validation(0.25)
    assert held.splits["train"].shape == (30, 12) and held.splits["valid"].shape == (10, 12)
    assert held.heldout == "valid" and data.heldout == "test"
    assert torch.equal(held.splits["test"], data.splits["test"])  # the test split untouched
    rows = {tuple(r.tolist()) for r in held.splits["train"]}
    assert len(rows) == 30 and rows < {tuple(r.tolist()) for r in x[:40]}  # train keeps 30 of its own rows
    assert set(held.splits["valid"].unique().tolist()) <= {0.0, 1.0}  # grey values binarized once, as evaluated
    for split in ("train", "valid"):  # the labels follow their rows
        assert held.labels[split].shape == (held.splits[split].shape[0],)
    train_order = [(r == x[:40]).all(1).nonzero().item() for r in held.splits["train"]]
    assert torch.equal(held.labels["train"], y[:40][train_order])
    assert torch.equal(data.with_validation(0.25).splits["valid"], held.splits["valid"])  # seeded
    with pytest.raises(DataError, match="has a validation split already"):
        held.with_validation(0.1)
    with pytest.raises(DataError, match=r"must be in \(0, 1\)"):
        data.with_validation(1.5)


def test_training_monitors_the_validation_split_and_never_reads_the_test_split(monkeypatch):
    x = torch.bernoulli(torch.full((60, 12), 0.4))
    data = Dataset.from_tensors(x[:40], x[40:50], x[50:])
    read = []
    original = Dataset.eval_batches
    monkeypatch.setattr(
        Dataset, "eval_batches", lambda self, split, *a, **k: read.append(split) or original(self, split, *a, **k)
    )
    trainer = Trainer(*make_vae(), data, TrainConfig(epochs=1, batch_size=20), progress=False)
    row = trainer.train_epoch()
    assert "test" not in read and {"train", "valid"} <= set(read)
    assert row["heldout_split"] == "valid" and "test_elbo" not in row and row["valid_elbo"] < 0


def test_patience_counts_epochs_since_the_best(monkeypatch):
    x = torch.bernoulli(torch.full((60, 12), 0.4))
    data = Dataset.from_tensors(x[:40], x[40:50], x[50:])
    trainer = Trainer(*make_vae(), data, TrainConfig(early_stopping=2), progress=False)
    for scores, best, spent in (([-5.0], 1, False), ([-5.0, -6.0], 1, False), ([-5, -6, -4, -7, -4], 3, True)):
        trainer.history = [{"valid_elbo": s} for s in scores]
        assert (trainer.best_epoch, trainer.patience_spent) == (best, spent)
    with pytest.raises(FieldError, match="early_stopping"):
        TrainConfig(early_stopping=0)


def test_early_stopping_keeps_the_best_epoch(trained, tmp_path: Path, capsys):
    # 80 random training images: the validation ELBO is best after epoch 1 and falls after (over-fitting)
    out = tmp_path / "run"
    assert train(trained[0], out, "--epochs", "40", "--early-stopping", "2", "--lr", "0.01") == 0
    printed = capsys.readouterr().out
    metrics = pd.read_csv(out / "metrics.csv")
    best = int(metrics["epoch"][metrics["valid_elbo"].idxmax()])
    assert len(metrics) == best + 2 < 40 and "early stopping: no higher validation ELBO in 2 epochs" in printed
    assert f"best (epoch {best}) valid ELBO: {metrics['valid_elbo'].max():.3f}" in printed
    assert len(load_checkpoint(out / "best.pt")["trainer"]["history"]) == best
    kept, last = load(out), load(out, checkpoint="last")  # pyrovae.load reads the best epoch unless told
    saved = load_checkpoint(out / "best.pt")["trainer"]["modules"]["guide"]
    for name, value in kept.guide.state_dict().items():
        assert torch.equal(value, saved[name])
    pairs = zip(kept.guide.state_dict().values(), last.guide.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)  # the last epoch's are other parameters
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "50", "--no-progress"]) == 0  # nothing left
    assert len(pd.read_csv(out / "metrics.csv")) == best + 2


def test_early_stopping_without_a_validation_split_is_refused(tmp_path: Path, capsys):
    out = tmp_path / "run"
    err = one_error_line(capsys, 2, cli.main(["train", "--out", str(out), "--early-stopping", "3", *SMALL]))
    assert "has no validation split" in err and "--valid-fraction 0.1" in err and not out.exists()


def test_valid_fraction_holds_out_part_of_mnist_5k(tmp_path: Path):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--valid-fraction", "0.1", "--early-stopping", "5", "--epochs", "1"]
    assert cli.main([*argv, *SMALL]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["valid_elbo"].notna().all() and metrics["test_elbo"].isna().all()
    data = load_dataset("mnist-5k", valid_fraction=0.1)
    assert {k: v.shape[0] for k, v in data.splits.items()} == {"train": 4050, "test": 500, "valid": 450}
    assert (out / "best.pt").is_file() and cli.main(["evaluate", str(out), "--k", "1,5", "--limit", "50"]) == 0
