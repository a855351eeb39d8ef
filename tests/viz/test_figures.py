"""``pyrovae plot`` on tiny trained runs, and the figures ``pyrovae train`` writes on its own."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.patches import Ellipse
from PIL import Image

from pyrovae import cli, spec
from pyrovae.viz import figures, latent_space, plots

from conftest import binary_images, make_vae, write_amat

TINY = ["--hidden", "32", "--batch-size", "500", "--epochs", "1", "--no-progress", "--device", "cpu"]
SIZES = {  # (width, height) in pixels: the figure sizes in pyrovae.viz.plots / pyrovae.viz.latent_figures at 120 dpi
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
    assert cli.choices("plot")["kind"] == figures.KINDS == tuple(SIZES)


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


def curves_metrics(epochs: int) -> pd.DataFrame:
    rows = {
        "epoch": [1, 2],
        "train_elbo": [-120.0, -110.0],
        "test_elbo": [-121.0, -111.0],
        "reconstruction": [-100, -95],
    }
    rows |= {"kl": [20.0, 15.0], "beta": [1.0, 1.0], "active_units": [5, 7]}
    return pd.DataFrame(rows).iloc[:epochs]


def test_curves_draw_the_bounds_of_evaluate_when_present():
    bounds = pd.DataFrame({"k": [1, 50], "bound": [-111.0, -106.5], "stderr": [0.5, 0.4], "seconds": [0.1, 1.0]})
    fig = plots.curves_figure(curves_metrics(2), bounds)
    (legend,) = fig.legends  # outside the panels, where it hides no line
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [
        "train ELBO",
        "test ELBO (whole split)",
        "L_1 = -111.00 ± 0.50 (evaluate)",
        "L_50 = -106.50 ± 0.40 (evaluate)",
    ]
    low, high = fig.axes[0].get_ylim()  # the highest bound clear of the top frame
    assert low < -121.0 and high - (-106.5) > 0.05 * (high - low)


def test_curves_say_how_many_images_the_bounds_are_on():
    bounds = pd.DataFrame({"k": [50], "bound": [-106.5], "stderr": [0.4], "seconds": [1.0], "images": [100]})
    (legend,) = plots.curves_figure(curves_metrics(2), bounds).legends
    assert legend.get_texts()[-1].get_text() == "L_50 = -106.50 ± 0.40 (100 test images)"


@pytest.mark.parametrize("epochs", [1, 2])
def test_curves_mark_every_epoch_on_whole_epoch_ticks(epochs: int):
    fig = plots.curves_figure(curves_metrics(epochs))
    curves = [line for ax in fig.axes for line in ax.lines]
    assert len(curves) == 6 and all(line.get_marker() == "o" for line in curves)  # one epoch: still visible
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks == list(range(1, epochs + 1))


def encoded(model, guide, x: torch.Tensor) -> figures.EncodedTestSplit:
    site, z = latent_space.encode(guide, [x])
    return figures.EncodedTestSplit(model, guide, (1, 4, 4), x, None, site, z, len(x))


@pytest.mark.parametrize(("family", "title"), [("ae", "Codes f(x)"), ("vae", "Posterior means E_q[z | x]")])
def test_latent_map_calls_an_autoencoders_encodings_codes(family: str, title: str):
    model, guide = spec.build(family, data_dim=16)
    guide.eval()
    (ax,) = figures.DRAW["latent-map"](encoded(model, guide, torch.rand(30, 16)), figures.PlotOptions()).axes
    assert ax.get_title().startswith(title)


def test_latent_map_option_draws_the_models_prior_contours():
    model, guide = make_vae(data_dim=16, latent_dim=2)
    with torch.no_grad():
        model.prior_scale.copy_(torch.tensor([2.0, 0.5]))
    t = encoded(model, guide, torch.rand(30, 16))
    (ax,) = figures.DRAW["latent-map"](t, figures.PlotOptions()).axes
    assert not ax.patches
    (ax,) = figures.DRAW["latent-map"](t, figures.PlotOptions(prior_contours=True)).axes
    assert [(p.width, p.height) for p in ax.patches if isinstance(p, Ellipse)] == [(4.0, 1.0), (8.0, 2.0)]


def test_a_model_with_several_latents_draws_the_one_named_by_site(amat_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "hvae"
    assert train_unlabelled(amat_dir, out, "--model", "hvae", "--latent-dim", "4,2", "--hidden", "16") == 0
    capsys.readouterr()
    assert cli.main(["plot", str(out), "--kind", "latent-map"]) == 2
    assert "this model has the latents z1, z2; choose one with --site" in capsys.readouterr().err
    for kind, site in (("latent-map", "z1"), ("manifold", "z2"), ("traverse", "z1"), ("interpolate", "z2")):
        png = tmp_path / f"{kind}-{site}.png"
        assert cli.main(["plot", str(out), "--kind", kind, "--site", site, "--out", str(png)]) == 0, kind
        with Image.open(png) as image:
            assert image.format == "PNG"
    assert cli.main(["plot", str(out), "--kind", "manifold", "--site", "z1"]) == 2
    assert "needs a 2-D latent, z1 has D = 4" in capsys.readouterr().err
    assert cli.main(["plot", str(out), "--kind", "reconstructions", "--out", str(tmp_path / "r.png")]) == 0  # no site
    assert cli.main(["plot", str(out), "--kind", "samples", "--site", "z3"]) == 2
    assert "--site z3: no such latent; this model has z1, z2" in capsys.readouterr().err
