"""Data-parallel training on torchrun (gloo, 2 CPU processes): the same parameters as one process on the whole
batch, the same metrics on resume, one error line."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from pyrovae.checkpoint import load_checkpoint
from pyrovae.distributed import Shard

from conftest import SMALL

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pyrovae"]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("batch_size", [1, 5, 8])
def test_the_weighted_shares_average_to_the_whole_batch(world: int, batch_size: int):
    g = torch.randn(batch_size)  # per-datapoint gradients
    shards = [Shard(r, world) for r in range(world)]
    shares = [s.of(g) for s in shards]
    nonempty = [s for s in shards if s.weight(batch_size) > 0]
    assert torch.equal(torch.cat([s.of(g) for s in nonempty]), g)  # the shares are the batch, in order
    # DDP's mean over ranks of weight_r * (N / b_r) * sum_r g: the whole batch's (N / B) sum g (N = 1)
    mean = sum(s.weight(batch_size) * x.sum() / len(x) for s, x in zip(shards, shares, strict=True)) / world
    assert torch.allclose(mean, g.mean())


def torchrun(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *argv], capture_output=True, text=True, timeout=300)


def options(data: Path, model: str, epochs: int) -> list[str]:
    # batch 25 of 80 rows: the last batch of 5 splits 3 / 2
    return ["--dataset", "binarized-mnist", "--data-dir", str(data), "--model", model, "--epochs", str(epochs),
            *SMALL, "--batch-size", "25"]  # fmt: skip


def test_two_processes_train_as_one_on_the_whole_batch(trained, tmp_path: Path):
    from pyrovae import cli

    data = trained[0]
    done = torchrun("train", "--out", str(tmp_path / "two"), *options(data, "ae", 2))  # deterministic: no z drawn
    assert done.returncode == 0, done.stderr
    assert cli.main(["train", "--out", str(tmp_path / "one"), *options(data, "ae", 2)]) == 0
    two, one = (load_checkpoint(tmp_path / name / "checkpoint.pt")["trainer"]["modules"] for name in ("two", "one"))
    for role in ("model", "guide"):
        for name, value in one[role].items():
            assert torch.allclose(two[role][name], value, rtol=1e-5, atol=1e-6), name
    metrics = [pd.read_csv(tmp_path / name / "metrics.csv") for name in ("two", "one")]
    for column in ("train_elbo", "valid_elbo", "train_loss"):
        assert metrics[0][column].to_numpy() == pytest.approx(metrics[1][column].to_numpy(), rel=1e-5)
    assert done.stdout.count("epoch   1") == 1  # rank 0 alone prints (and writes)


@pytest.mark.slow  # each rank compiles its step with inductor: about 60 s
def test_two_compiled_processes_train_as_one_eager_process(trained, tmp_path: Path):
    from pyrovae import cli

    data = trained[0]
    done = torchrun("train", "--out", str(tmp_path / "two"), *options(data, "ae", 1), "--compile")
    assert done.returncode == 0, done.stderr
    assert "compiled the training step" in done.stdout and "CompileFallbackWarning" not in done.stderr
    assert cli.main(["train", "--out", str(tmp_path / "one"), *options(data, "ae", 1)]) == 0
    two, one = (load_checkpoint(tmp_path / name / "checkpoint.pt")["trainer"]["modules"] for name in ("two", "one"))
    for role in ("model", "guide"):  # the gradients averaged by one all-reduce, as DDP averages the eager ones
        for name, value in one[role].items():
            assert torch.allclose(two[role][name], value, rtol=1e-4, atol=1e-5), name


@pytest.mark.slow  # three torchrun launches, about 20 s
def test_a_resumed_two_process_run_repeats_an_uninterrupted_one(trained, tmp_path: Path):
    data = trained[0]
    assert torchrun("train", "--out", str(tmp_path / "whole"), *options(data, "vae", 2)).returncode == 0
    assert torchrun("train", "--out", str(tmp_path / "cut"), *options(data, "vae", 1)).returncode == 0
    resumed = torchrun("train", "--out", str(tmp_path / "cut"), "--resume", "--epochs", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    whole, cut = (pd.read_csv(tmp_path / name / "metrics.csv").drop(columns="seconds") for name in ("whole", "cut"))
    pd.testing.assert_frame_equal(whole, cut)


@pytest.mark.slow  # a torchrun launch, about 10 s
def test_a_bad_command_under_torchrun_gives_one_error_line(tmp_path: Path):
    done = torchrun("train", "--out", str(tmp_path / "run"), "--early-stopping", "2", *SMALL)  # mnist-5k: no valid
    assert done.returncode != 0 and not (tmp_path / "run").exists()
    lines = [line for line in done.stderr.splitlines() if line.startswith("pyrovae: error:")]
    assert len(lines) == 1 and "has no validation split" in lines[0]


@pytest.mark.slow  # a torchrun launch, about 10 s
def test_evaluate_under_torchrun_shares_the_batches_and_gives_one_process_bounds(trained, tmp_path: Path):
    from pyrovae import cli

    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    argv = [str(run), "--k", "1,10", "--batch-size", "7"]  # 40 test images: 6 batches, 3 per rank, the last of 5
    assert cli.main(["evaluate", *argv]) == 0
    one = pd.read_csv(run / "bounds.csv")
    done = torchrun("evaluate", *argv)
    assert done.returncode == 0, done.stderr
    two = pd.read_csv(run / "bounds.csv")
    assert two["bound"].to_numpy() == pytest.approx(one["bound"].to_numpy(), rel=1e-6)
    assert (two["images"] == 40).all() and done.stdout.count("active units") == 1
