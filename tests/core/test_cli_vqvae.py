"""pyrovae train --model vqvae, then --model vqvae-prior --from RUN, then evaluate and sample; and the VQ options'
errors (status 2, one line)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pyrovae import cli

VQ = ["--codebook-size", "16", "--code-dim", "4", "--batch-size", "40", "--no-progress", "--epochs", "1"]


@pytest.fixture
def first_stage(amat_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "vq"
    data = ["--dataset", "binarized-mnist", "--data-dir", str(amat_dir)]
    assert cli.main(["train", "--model", "vqvae", "--out", str(out), *data, *VQ]) == 0
    return out


def test_two_stages_train_and_the_learned_prior_tightens_the_bound(first_stage: Path, tmp_path: Path, capsys):
    metrics = pd.read_csv(first_stage / "metrics.csv")
    assert {"perplexity", "codes_used", "commitment"} <= set(metrics.columns)
    assert 1 <= metrics["codes_used"].iloc[-1] <= 16 and 1 <= metrics["perplexity"].iloc[-1] <= 16
    assert metrics["kl"].iloc[-1] == pytest.approx(49 * math.log(16))  # uniform prior: P log K, P = 7 x 7
    second = tmp_path / "prior"
    argv = ["train", "--model", "vqvae-prior", "--from", str(first_stage), "--out", str(second)]
    assert cli.main([*argv, "--prior-layers", "1", "--epochs", "2", "--batch-size", "40", "--no-progress"]) == 0
    config = json.loads((second / "config.json").read_text())
    assert config["vq"]["first_stage"] == str(first_stage.resolve()) and config["vq"]["codebook_size"] == 16
    prior = pd.read_csv(second / "metrics.csv")
    assert prior["reconstruction"].nunique() == 1  # the first stage is frozen: log p(x | z_q) stays
    assert prior["reconstruction"].iloc[0] == pytest.approx(metrics["reconstruction"].iloc[-1])
    assert prior["kl"].iloc[-1] < metrics["kl"].iloc[-1]  # -log p(z_q) under the PixelCNN < P log K
    assert cli.main(["evaluate", str(second), "--k", "1,5"]) == 0
    bounds = pd.read_csv(second / "bounds.csv")
    assert bounds["bound"].nunique() == 1  # a point mass: L_5 = L_1
    assert bounds["bits_per_dim"].iloc[0] == pytest.approx(-bounds["bound"].iloc[0] / (784 * math.log(2)))
    assert cli.main(["sample", str(second), "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert cli.main(["plot", str(second), "--kind", "samples", "--out", str(tmp_path / "p.png")]) == 0
    assert cli.main(["plot", str(second), "--kind", "traverse", "--out", str(tmp_path / "t.png")]) == 2
    assert "its figures are samples, reconstructions, latent-map, curves" in capsys.readouterr().err
    assert cli.main(["plot", str(second), "--kind", "samples", "--temperature", "0.5"]) == 2
    assert "use --temperature 1" in capsys.readouterr().err


def test_a_resumed_prior_stage_needs_no_first_stage(first_stage: Path, tmp_path: Path):
    import shutil

    second = tmp_path / "prior"
    argv = ["train", "--model", "vqvae-prior", "--from", str(first_stage), "--out", str(second), "--no-progress"]
    assert cli.main([*argv, "--prior-layers", "1", "--epochs", "1", "--batch-size", "40"]) == 0
    shutil.rmtree(first_stage)  # the second stage's checkpoint holds every network
    assert cli.main(["train", "--out", str(second), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert pd.read_csv(second / "metrics.csv")["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "vqvae-prior"], "give --from RUN"),
        (["--model", "vae", "--codebook-size", "8"], "--codebook-size is an option of --model vqvae"),
        (["--model", "vqvae", "--latent-dim", "8"], "the model options apply to spec models"),
        (["--model", "vqvae", "--codebook-size", "1"], "--codebook-size must be at least 2"),
        (["--model", "vqvae", "--from", "x"], "--from and --prior-layers are options of --model vqvae-prior"),
    ],
)
def test_bad_vq_options_are_refused_in_one_line(argv: list[str], message: str, tmp_path: Path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_prior_stage_from_a_run_that_is_no_vqvae_is_refused(amat_dir: Path, tmp_path: Path, capsys):
    vae = tmp_path / "vae"
    assert cli.main(["train", "--out", str(vae), "--epochs", "1", "--hidden", "16", "--latent-dim", "2",
                     "--dataset", "binarized-mnist", "--data-dir", str(amat_dir), "--no-progress"]) == 0  # fmt: skip
    argv = ["train", "--model", "vqvae-prior", "--from", str(vae), "--out", str(tmp_path / "prior")]
    assert cli.main(argv) == 2
    assert "not the directory of a trained pyrovae train --model vqvae run" in capsys.readouterr().err
