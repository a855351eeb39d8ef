"""``pyrovae plot`` on tiny trained runs, and the figures ``pyrovae train`` writes on its own."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pyrovae import cli, figures, plots

from conftest import binary_images, write_amat

TINY = ["--hidden", "32", "--batch-size", "500", "--epochs", "1", "--no-progress", "--device", "cpu"]
SIZES = {  # (width, height) in pixels: the figure sizes in pyrovae.plots / pyrovae.latent at 120 dpi
    "samples": (600, 630),
    "reconstructions": (1140, 630),
    "latent-map": (780, 660),
    "manifold": (840, 900),
    "interpolate": (780, 930),
    "traverse": (780, 270),  # 2.25 in: 1.25 in + 1/2 in per latent dimension (D = 2)
    "arithmetic": (600, 630),
    "kl-per-dim": (1080, 480),
    "curves": (1080, 780),
}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory) -> Path:
    """mnist-5k (labelled), 2-D latent, one epoch."""
    out = tmp_path_factory.mktemp("labelled") / "run"
    assert cli.main(["train", "--out", str(out), "--latent-dim", "2", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def unlabelled_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("binarized_mnist")
    for i, (split, n) in enumerate((("train", 120), ("valid", 40), ("test", 40))):
        write_amat(d / f"binarized_mnist_{split}.amat.gz", binary_images(n, seed=i))
    return d


def train_unlabelled(data_dir: Path, out: Path, *extra: str) -> int:
    args = ["train", "--dataset", "binarized-mnist", "--data-dir", str(data_dir), "--out", str(out), "--latent-dim"]
    return cli.main([*args, "3", *TINY, "--batch-size", "40", *extra])


def test_cli_kinds_match_the_library():
    assert cli.PLOT_KINDS == figures.KINDS == tuple(SIZES)


@pytest.mark.parametrize("kind", figures.KINDS)
def test_each_kind_draws_a_png_of_its_size(labelled_run: Path, tmp_path: Path, kind: str, capsys):
    out = tmp_path / f"{kind}.png"
    assert cli.main(["plot", str(labelled_run), "--kind", kind, "--out", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    image = pixels(out)
    assert image.shape[::-1] == SIZES[kind]
    assert (image < 128).mean() > 0.01 and (image > 128).mean() > 0.01  # something drawn, not a blank page


def test_unlabelled_latent_map_works_and_label_kinds_say_why_not(unlabelled_dir: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    assert train_unlabelled(unlabelled_dir, run) == 0
    assert cli.main(["plot", str(run), "--kind", "latent-map"]) == 0
    assert pixels(run / "latent-map.png").shape[::-1] == SIZES["latent-map"]
    capsys.readouterr()
    assert cli.main(["plot", str(run), "--kind", "arithmetic"]) == 2
    assert "labels" in capsys.readouterr().err
    assert cli.main(["plot", str(run), "--kind", "manifold"]) == 2
    assert "--latent-dim 2" in capsys.readouterr().err


def test_snapshots_decode_the_same_z_across_resume_and_leave_training_unchanged(unlabelled_dir: Path, tmp_path):
    snap = ["--snapshot-epochs", "1,2"]
    assert train_unlabelled(unlabelled_dir, tmp_path / "plain", "--epochs", "2") == 0
    assert train_unlabelled(unlabelled_dir, tmp_path / "straight", "--epochs", "2", *snap) == 0
    assert train_unlabelled(unlabelled_dir, tmp_path / "split", "--epochs", "1", *snap) == 0
    assert cli.main(["train", "--out", str(tmp_path / "split"), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((tmp_path / "split" / "config.json").read_text())["snapshot_epochs"] == [1, 2]
    for name in ("samples_e1.png", "samples_e2.png", "reconstructions_e2.png"):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "split" / name).read_bytes()
    assert pixels(tmp_path / "split" / "samples_e2.png").shape == (242, 482)  # 128 digits, 16 per row
    assert not np.array_equal(*(pixels(tmp_path / "split" / f"samples_e{n}.png") for n in (1, 2)))
    plain, straight = (pd.read_csv(tmp_path / r / "metrics.csv").drop(columns="seconds") for r in ("plain", "straight"))
    pd.testing.assert_frame_equal(plain, straight)
    kl = pd.read_csv(tmp_path / "split" / "kl_per_dim.csv")
    assert list(kl.columns) == ["epoch", "z[0]", "z[1]", "z[2]"] and kl["epoch"].tolist() == [1, 2]


def test_curves_draw_the_bounds_of_evaluate_when_present():
    metrics = pd.DataFrame(
        {"epoch": [1, 2], "train_elbo": [-120.0, -110.0], "test_elbo": [-121.0, -111.0], "reconstruction": [-100, -95]}
        | {"kl": [20.0, 15.0], "beta": [1.0, 1.0], "active_units": [5, 7]}
    )
    bounds = pd.DataFrame({"k": [1, 50], "bound": [-111.0, -106.5], "stderr": [0.5, 0.4], "seconds": [0.1, 1.0]})
    elbo_ax = plots.curves_figure(metrics, bounds).axes[0]
    labels = [t.get_text() for t in elbo_ax.get_legend().get_texts()]
    assert labels == ["train ELBO", "test ELBO", "L_1 = -111.00 ± 0.50 (evaluate)", "L_50 = -106.50 ± 0.40 (evaluate)"]
