"""Checks on the real reference data in ../shared/data (slow: ``pytest -m slow``)."""

import math
import time
from pathlib import Path

import pandas as pd
import pytest

from pyrovae import cli
from pyrovae.data import load_dataset, read_amat

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BINARIZED = SHARED / "binarized_mnist"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BINARIZED.is_dir(), reason=f"no reference data at {BINARIZED}"),
]


def test_the_50000_image_training_file_parses_in_under_3_seconds():
    start = time.perf_counter()
    x = read_amat(BINARIZED / "binarized_mnist_train.amat.gz")
    seconds = time.perf_counter() - start
    assert x.shape == (50_000, 784) and set(x.unique().tolist()) == {0.0, 1.0}
    assert x.mean().item() == pytest.approx(0.1306, abs=5e-5)  # the README's mean pixel value
    assert seconds < 3.0


def test_static_splits_have_the_standard_sizes():
    data = load_dataset("binarized-mnist", data_dir=BINARIZED)
    assert {name: data.split(name).shape[0] for name in ("train", "valid", "test")} == {
        "train": 50_000,
        "valid": 10_000,
        "test": 10_000,
    }


def test_one_epoch_on_static_mnist_learns(tmp_path: Path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "binarized-mnist", "--data-dir", str(BINARIZED), "--epochs", "1"]
    assert cli.main([*args, "--latent-dim", "20", "--hidden", "200", "--no-progress", "--out", str(out)]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    # an untrained decoder scores about 784 log 2 = 543 nats; one epoch reaches far below 200
    assert metrics["heldout_split"].iloc[0] == "valid"  # the 10,000 validation images, the test split left alone
    assert math.isfinite(metrics["valid_elbo"].iloc[0]) and metrics["valid_elbo"].iloc[0] > -200
    assert cli.main(["evaluate", str(out), "--k", "1,5,50", "--limit", "200"]) == 0
    bounds = pd.read_csv(out / "bounds.csv")["bound"].tolist()
    assert bounds == sorted(bounds)  # L_1 <= L_5 <= L_50 on the same 200 test images
