"""The built-in gmvae from the command line: y summed exactly by every objective that can, bounds, clustering."""

from pathlib import Path

import pandas as pd
import pytest

from pyrovae import cli

from conftest import one_error_line, train

GMVAE = ["--model", "gmvae", "--latent-dim", "4,2"]  # y of 4 components, z of 2 dimensions


@pytest.mark.parametrize(
    "objective",
    [
        ["--objective", "elbo"],
        ["--objective", "iwae", "--particles", "3"],
        ["--discrete", "straight-through"],
        ["--discrete", "score"],
        ["--discrete", "score", "--objective", "iwae", "--particles", "3"],  # VIMCO
    ],
)
def test_gmvae_trains_and_its_bounds_rise_with_k(amat_dir: Path, tmp_path: Path, capsys, objective):
    out = tmp_path / "run"
    assert train(amat_dir, out, *GMVAE, "--epochs", "2", *objective) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["valid_elbo"].notna().all() and (metrics["kl"] > 0).all()  # binarized-mnist's valid split
    assert metrics["test_elbo"].isna().all() and (metrics["heldout_split"] == "valid").all()  # test: evaluate only
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--k", "1,20"]) == 0
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")["bound"]
    assert bounds[20] > bounds[1]
    assert "clustering accuracy" not in capsys.readouterr().out  # binarized MNIST has no labels to match
    assert cli.main(["sample", str(out), "--out", str(tmp_path / "s.png")]) == 0
    latent_map = ["plot", str(out), "--kind", "latent-map", "--site", "z", "--out", str(tmp_path / "map.png")]
    assert cli.main([*latent_map, "--colour-by", "y"]) == 0  # coloured by the guide's clusters, argmax q(y | x)
    err = one_error_line(capsys, 2, cli.main([*latent_map, "--colour-by", "z"]))
    assert "--colour-by z: not a categorical latent of this model (it has ['y'])" in err


def test_evaluate_reports_the_clustering_accuracy_of_q_y_on_labelled_data(tmp_path: Path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), *GMVAE, "--hidden", "32", "--epochs", "1", "--no-progress"]
    assert cli.main(argv) == 0  # mnist-5k: labelled
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--k", "1", "--limit", "100"]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("clustering accuracy of q(y | x): ")[1].split()[0])
    assert 0.1 <= accuracy <= 1.0  # the best one-to-one matching of 4 clusters to 10 classes gets at least N / 10


def test_mf_elbo_is_refused_for_a_discrete_latent(amat_dir: Path, tmp_path: Path, capsys):
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "run", *GMVAE, "--objective", "mf-elbo"))
    assert "--objective mf-elbo would sample the discrete latent 'y'" in err and not (tmp_path / "run").exists()
    score_iwae = ["--discrete", "score", "--objective", "iwae"]
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "run", *GMVAE, *score_iwae))
    assert "--objective iwae trains the score-function latent 'y' by VIMCO" in err and "--particles 2 or more" in err
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "run", *GMVAE, *score_iwae, "--iwae-gradient", "dreg"))
    assert "--objective iwae needs a reparameterized guide, and latent 'y' trains by the score function" in err


M2 = ["--model", "m2", "--latent-dim", "10,4", "--hidden", "32", "--no-progress"]


def test_m2_keeps_n_labels_and_reports_its_classifier(tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), *M2, "--labelled", "50", "--epochs", "2"]) == 0  # mnist-5k
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["test_accuracy"].between(0, 1).all() and (metrics["aux_classifier"] > 0).all()
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--k", "1,10", "--limit", "100"]) == 0
    printed = capsys.readouterr().out
    assert "classification accuracy of q(y | x): " in printed  # against the labels: y's classes are theirs
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")["bound"]
    assert bounds[10] > bounds[1]  # bounds on log p(x): the test labels are not given
    assert cli.main(["sample", str(out), "--label", "3", "--n", "8", "--out", str(tmp_path / "three.png")]) == 0
    assert (tmp_path / "three.png").is_file()  # samples of class 3: y fixed, z from the prior
    err = one_error_line(capsys, 2, cli.main(["sample", str(out), "--label", "10"]))
    assert "--label must be a class of y in 0..9, got 10" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--labelled", "50"], "--labelled applies to a model with a partially observed latent (--model m2)"),
        (["--classifier-weight", "2"], "--classifier-weight applies to a model with a partially observed latent"),
    ],
)
def test_semi_supervised_options_need_a_partially_observed_latent(tmp_path: Path, capsys, argv, message):
    err = one_error_line(capsys, 2, cli.main(["train", "--out", str(tmp_path / "run"), *argv]))
    assert message in err


def test_m2_needs_labelled_data(amat_dir: Path, tmp_path: Path, capsys):
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "run", "--model", "m2", "--latent-dim", "10,3"))
    assert "latent 'y' is observed where its label is known, and binarized-mnist has no labels" in err
