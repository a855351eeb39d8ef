"""Faults lose nothing: kill -9, SIGINT/SIGTERM, NaN, failed writes; and runs are reproducible."""

import errno
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch

from pyrovae import checkpoint, cli
from pyrovae.checkpoint import CHECKPOINT, load_checkpoint
from pyrovae.inference import Trainer

from conftest import SMALL, train  # SMALL: 3 steps per epoch on amat_dir's 120 training rows


def resume(out: Path, *extra: str) -> int:
    return cli.main(["train", "--out", str(out), "--resume", "--no-progress", *extra])


def metrics(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "metrics.csv").drop(columns="seconds")


def epochs_saved(out: Path) -> int:
    return len(load_checkpoint(out / CHECKPOINT)["trainer"]["history"])


def stop_during_training(amat_dir: Path, out: Path, signum: int, after_epoch: int = 2) -> subprocess.CompletedProcess:
    """Run ``pyrovae train`` in a real process and send it ``signum`` once ``after_epoch`` epochs are printed."""
    argv = [sys.executable, "-m", "pyrovae.cli", "train", "--dataset", "binarized-mnist"]
    argv += ["--data-dir", str(amat_dir), "--out", str(out), "--epochs", "100000", *SMALL]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("epoch") and int(line.split()[1]) >= after_epoch:
                proc.send_signal(signum)
                break
        stdout, stderr = proc.communicate()
    finally:
        watchdog.cancel()
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def assert_continues_like_a_straight_run(amat_dir: Path, out: Path, tmp_path: Path) -> None:
    done = len(pd.read_csv(out / "metrics.csv"))
    assert metrics(out)["epoch"].tolist() == list(range(1, done + 1))  # every epoch exactly once
    assert resume(out, "--epochs", str(done + 2)) == 0
    assert train(amat_dir, tmp_path / "straight", "--epochs", str(done + 2)) == 0
    pd.testing.assert_frame_equal(metrics(out), metrics(tmp_path / "straight"))
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow  # a real process killed: 5 s
def test_kill_9_then_resume_matches_an_uninterrupted_run(amat_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    killed = stop_during_training(amat_dir, out, signal.SIGKILL, after_epoch=3)
    assert killed.returncode == -signal.SIGKILL
    assert epochs_saved(out) >= 3
    assert_continues_like_a_straight_run(amat_dir, out, tmp_path)


@pytest.mark.slow  # real processes signalled: 12 s
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_exits_cleanly_and_says_how_to_resume(amat_dir: Path, tmp_path: Path, signum: int, status: int):
    out = tmp_path / "run"
    stopped = stop_during_training(amat_dir, out, signum)
    assert stopped.returncode == status, stopped.stderr
    assert stopped.stderr.startswith(f"pyrovae: stopped: {signal.Signals(signum).name} received; ")
    assert f"continue with: pyrovae train --out {out} --resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert epochs_saved(out) == len(pd.read_csv(out / "metrics.csv")) >= 2
    assert_continues_like_a_straight_run(amat_dir, out, tmp_path)


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(amat_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--epochs", "2") == 0
    saved = (out / CHECKPOINT).read_bytes()
    capsys.readouterr()
    assert resume(out, "--epochs", "4", "--lr", "1e30") == 1  # Adam moves every weight by ~1e30: overflow
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NaN or infinite at step 8 (epoch 3); last finite loss: " in err
    # the advice starts from a learning rate known to train (1e30 / 10 would diverge again), ready to run
    command = f"pyrovae train --out {out} --resume --lr 0.001 --clip-norm 100"
    assert f"{out / CHECKPOINT} (epoch 2) is kept; continue with a lower learning rate" in err and err.endswith(
        command + "\n"
    )
    assert (out / CHECKPOINT).read_bytes() == saved and len(pd.read_csv(out / "metrics.csv")) == 2
    assert cli.main([*command.split()[1:], "--epochs", "3", "--no-progress"]) == 0  # following the advice works
    assert len(pd.read_csv(out / "metrics.csv")) == 3


def test_failed_checkpoint_write_keeps_the_previous_one(amat_dir: Path, tmp_path: Path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--epochs", "1") == 0
    saved = (out / CHECKPOINT).read_bytes()
    replace = os.replace

    def full_disk(src, dst):
        if Path(dst).name == CHECKPOINT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", full_disk)
    capsys.readouterr()
    assert resume(out, "--epochs", "2") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pyrovae: error: {out / CHECKPOINT}: could not write (No space left on device)")
    assert (out / CHECKPOINT).read_bytes() == saved and not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    assert resume(out, "--epochs", "2") == 0 and epochs_saved(out) == 2


def test_same_seed_same_metrics_other_seed_other_metrics(amat_dir: Path, tmp_path: Path):
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert train(amat_dir, tmp_path / name, "--epochs", "2", "--seed", seed) == 0
    pd.testing.assert_frame_equal(metrics(tmp_path / "a"), metrics(tmp_path / "b"))
    assert not metrics(tmp_path / "a").equals(metrics(tmp_path / "c"))
    params = [load_checkpoint(tmp_path / r / CHECKPOINT)["trainer"]["params"] for r in "ab"]
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])


@pytest.mark.parametrize(("at_step", "saved"), [(2, "no epoch was completed"), (5, "1 completed epochs are saved")])
def test_ctrl_c_mid_epoch_abandons_it(amat_dir: Path, tmp_path: Path, capsys, monkeypatch, at_step: int, saved: str):
    out, calls, step = tmp_path / "run", [], Trainer.step

    def interrupted_step(self, x, beta):
        calls.append(1)
        if len(calls) == at_step:  # 3 steps per epoch: step 5 is the middle of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, x, beta)

    monkeypatch.setattr(Trainer, "step", interrupted_step)
    assert train(amat_dir, out, "--epochs", "3") == 130
    assert saved in capsys.readouterr().err
    assert len(pd.read_csv(out / "metrics.csv")) == (at_step - 1) // 3
    monkeypatch.undo()
    assert_continues_like_a_straight_run(amat_dir, out, tmp_path)
