"""The command line for the model family: every family trains, evaluates and samples."""

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pyrovae import cli, spec
from pyrovae.models.likelihoods import LIKELIHOODS

SMALL = ["--hidden", "16", "--batch-size", "40", "--epochs", "1", "--no-progress"]


def train(data: Path, out: Path, *extra: str) -> int:
    return cli.main(
        ["train", "--dataset", "binarized-mnist", "--data-dir", str(data), "--out", str(out), *SMALL, *extra]
    )


@pytest.mark.parametrize(
    "options",
    [
        ["--model", "hvae", "--latent-dim", "4,2"],
        ["--guide", "full", "--objective", "mf-elbo", "--arch", "conv", "--likelihood", "learned-gaussian"],
        ["--model", "dae", "--corruption", "gaussian:0.5"],
    ],
    ids=["hvae", "full-conv", "dae"],
)
def test_families_train_evaluate_and_sample(amat_dir: Path, tmp_path: Path, capsys, options: list[str]):
    out = tmp_path / "run"
    assert train(amat_dir, out, *options) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--k", "1,10"]) == 0
    report = capsys.readouterr().out
    if "dae" in options:
        assert "not applicable" in report and not (out / "bounds.csv").exists()
    else:
        assert (pd.read_csv(out / "bounds.csv")["k"] == [1, 10]).all()
    assert ("active units: z1 " if "hvae" in options else "active units: z ") in report
    assert cli.main(["sample", str(out), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0


def test_cvae_samples_by_label(mnist_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "cvae"
    data = ["--dataset", "mnist", "--data-dir", str(mnist_dir)]
    assert cli.main(["train", "--model", "cvae", "--out", str(out), *data, *SMALL, "--latent-dim", "2"]) == 0
    assert cli.main(["sample", str(out), "--label", "3", "--n", "16", "--out", str(tmp_path / "three.png")]) == 0
    with Image.open(tmp_path / "three.png") as image:
        assert image.size == (242, 62)
    with Image.open(out / "samples.png") as image:
        assert image.size == (242, 302)  # 8 samples of each of the 10 classes, one class per row
    assert cli.main(["sample", str(out), "--label", "10"]) == 2
    assert "0..9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "cvae"], "binarized-mnist has none"),
        (["--model", "hvae", "--objective", "mf-elbo"], "mean-field"),
        (["--model", "hvae", "--latent-dim", "5"], "--latent-dim: give 2 sizes"),
        (["--model", "ae", "--guide", "full"], "'delta'"),
        (["--model", "dae", "--corruption", "blur:1"], "bad corruption"),
        (["--corruption", "mask:0.2"], "autoencoders"),
    ],
)
def test_bad_combinations_are_one_clear_line(amat_dir: Path, tmp_path: Path, capsys, options: list[str], message: str):
    assert train(amat_dir, tmp_path / "run", *options) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_train_from_a_spec_file(amat_dir: Path, tmp_path: Path, capsys):
    path = tmp_path / "two.toml"
    path.write_text(
        'likelihood = "bernoulli"\nhidden = [16]\n'
        '[[latent]]\nname = "a"\nsize = 2\nencoder = { given = ["x"] }\n'
        '[[latent]]\nname = "b"\nsize = 3\nencoder = { given = ["x"] }\n'
        '[x]\ngiven = ["a", "b"]\n'
    )
    assert train(amat_dir, tmp_path / "run", "--spec", str(path)) == 0
    assert cli.main(["evaluate", str(tmp_path / "run"), "--k", "1"]) == 0
    path.write_text(path.read_text().replace("size = 3", ""))
    assert train(amat_dir, tmp_path / "bad", "--spec", str(path)) == 2
    assert "latent[1].size: missing" in capsys.readouterr().err


def test_cli_model_choices_are_the_library_s():
    assert cli.choices("train")["model"] == (*spec.BUILTIN, "vqvae", "vqvae-prior")
    assert cli.choices("train")["likelihood"] == LIKELIHOODS


def test_latent_figures_of_a_conditional_model_draw_with_or_without_label(mnist_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "cvae"
    data = ["--dataset", "mnist", "--data-dir", str(mnist_dir)]
    assert cli.main(["train", "--model", "cvae", "--out", str(out), *data, *SMALL, "--latent-dim", "2"]) == 0
    assert cli.main(["plot", str(out), "--kind", "latent-map"]) == 0
    assert cli.main(["plot", str(out), "--kind", "manifold", "--label", "4"]) == 0
    capsys.readouterr()
    assert cli.main(["plot", str(out), "--kind", "latent-map", "--label", "10"]) == 2
    err = capsys.readouterr().err
    assert "--label must be a class of y in 0..9" in err and err.count("\n") == 1
    assert cli.main(["plot", str(out), "--kind", "curves"]) == 0
