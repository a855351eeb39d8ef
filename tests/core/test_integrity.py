"""Integrity of run directories: nothing runs from a loaded file, nothing is lost, one writer, one error policy."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyro.util
import pytest
import torch

from pyrovae import cli, evaluate, runs, store
from pyrovae.checkpoint import CHECKPOINT, LEGACY_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from pyrovae.errors import InputError
from pyrovae.inference import Trainer
from pyrovae.lock import LOCK, run_lock

from conftest import SMALL, binary_images, one_error_line, train, write_amat


@pytest.fixture
def run(trained, tmp_path: Path) -> Path:
    shutil.copytree(trained[1], tmp_path / "run")
    return tmp_path / "run"


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != LOCK}


def resume(out: Path, *extra: str) -> int:
    return cli.main(["train", "--out", str(out), "--resume", "--no-progress", *extra])


# 1. Opening a run directory never runs code from it


class Exploit:
    """Unpickling this creates the directory ``marker``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


COMMANDS = [
    ["evaluate", "{run}", "--k", "1"],
    ["sample", "{run}", "--out", "{tmp}/s.png"],
    ["plot", "{run}", "--kind", "samples", "--out", "{tmp}/p.png"],
    ["plot", "{run}", "--kind", "curves", "--out", "{tmp}/c.png"],
    ["train", "--out", "{run}", "--resume", "--no-progress", "--epochs", "2"],
    ["train", "--out", "{run}", "--resume", "--no-progress", "--batch-size", "7"],  # then refused anyway
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_a_checkpoint_that_would_run_code_is_refused_unrun(run: Path, tmp_path: Path, capsys, argv: list[str]):
    marker = tmp_path / "exploited"
    state = load_checkpoint(run / CHECKPOINT)
    state["trainer"]["history"][0]["note"] = Exploit(marker)
    torch.save(state, run / CHECKPOINT)
    before = snapshot(run)
    capsys.readouterr()
    argv = [a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in argv]
    err = one_error_line(capsys, 2, cli.main(argv))
    assert not marker.exists()
    assert f"{run / CHECKPOINT}: not a plain pyrovae checkpoint" in err and "will not unpickle it" in err, err
    assert "posix.mkdir" in err and snapshot(run) == before


def legacy(run: Path, tmp_path: Path) -> Path:
    """The run as pyrovae 0.1.0 wrote it: format 1, numpy's RNG state as an array, pickled in full."""
    state = load_checkpoint(run / CHECKPOINT)
    state["format"] = LEGACY_FORMAT
    state["trainer"]["rng"] = pyro.util.get_rng_state()  # ("MT19937", uint32 array, ...)
    torch.save(state, run / CHECKPOINT)
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(run / CHECKPOINT)) >= {"numpy.ndarray"}
    return run


def test_checkpoints_of_the_previous_format_load_and_resume(run: Path, tmp_path: Path):
    legacy(run, tmp_path)
    numpy_key = np.asarray(pyro.util.get_rng_state()["numpy"][1])
    state = load_checkpoint(run / CHECKPOINT)
    assert torch.equal(state["trainer"]["rng"]["numpy"][1], torch.from_numpy(numpy_key.astype(np.int64)))
    assert cli.main(["evaluate", str(run), "--k", "1"]) == 0
    assert resume(run, "--epochs", "2") == 0
    assert torch.serialization.get_unsafe_globals_in_checkpoint(run / CHECKPOINT) == []  # rewritten plain
    assert len(torch.load(run / CHECKPOINT, weights_only=True)["trainer"]["history"]) == 2


def test_a_previous_format_checkpoint_holding_objects_is_refused(run: Path, tmp_path: Path):
    legacy(run, tmp_path)
    state = torch.load(run / CHECKPOINT, weights_only=False)
    state["trainer"]["history"][0]["note"] = np.array([Exploit(tmp_path / "exploited")], dtype=object)
    torch.save(state, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match="not a plain pyrovae checkpoint"):
        load_checkpoint(run / CHECKPOINT)
    assert not (tmp_path / "exploited").exists()


# 2. --resume without a checkpoint never wipes the history


def test_resume_without_the_checkpoint_of_a_run_with_epochs_touches_nothing(run: Path, capsys):
    (run / CHECKPOINT).unlink()
    before = snapshot(run)
    err = one_error_line(capsys, 2, resume(run, "--epochs", "3"))
    assert f"{run / CHECKPOINT} is missing, but {run} shows completed epochs (metrics.csv, kl_per_dim.csv" in err
    assert snapshot(run) == before


def test_resume_of_a_run_stopped_in_its_first_epoch_starts_it(run: Path):
    for name in (CHECKPOINT, "samples.png", "reconstructions.png"):
        (run / name).unlink()
    header = (run / "metrics.csv").read_text().splitlines()[0]
    (run / "metrics.csv").write_text(header + "\n")  # as written before the first epoch
    (run / "kl_per_dim.csv").write_text("epoch\n")
    assert resume(run) == 0 and len(pd.read_csv(run / "metrics.csv")) == 1


# 3. The checkpoint commits an epoch: what the epoch writes is on disk before it


class Killed(BaseException):
    """The process dies here (a kill -9 cannot be caught, so nothing after this point runs)."""


def test_a_kill_before_the_snapshots_are_written_redoes_the_epoch(trained, tmp_path: Path, monkeypatch):
    out, save = tmp_path / "run", runs.save_snapshots

    def killed_at_epoch_2(model, guide, data, out, epoch):
        if epoch == 2:
            raise Killed
        save(model, guide, data, out, epoch)

    monkeypatch.setattr(runs, "save_snapshots", killed_at_epoch_2)
    with pytest.raises(Killed):
        train(trained[0], out, "--epochs", "2", "--snapshot-epochs", "1,2")
    assert len(load_checkpoint(out / CHECKPOINT)["trainer"]["history"]) == 1  # epoch 2 is not committed
    monkeypatch.undo()
    assert resume(out) == 0
    assert (out / "samples_e2.png").is_file() and (out / "reconstructions_e2.png").is_file()
    assert train(trained[0], tmp_path / "straight", "--epochs", "2", "--snapshot-epochs", "1,2") == 0
    assert (out / "samples_e2.png").read_bytes() == (tmp_path / "straight" / "samples_e2.png").read_bytes()


# 4. One writer per run directory


@pytest.mark.parametrize("argv", [["train", "--out", "{run}", "--resume", "--epochs", "2"], ["evaluate", "{run}"]])
def test_a_second_process_is_refused_and_touches_nothing(run: Path, capsys, argv: list[str]):
    (run / ".metrics.csv.abc123.tmp").write_bytes(b"the other process's write in progress")
    before = snapshot(run)
    with run_lock(run, "train"):  # flock: a second open, in this process too, is refused
        err = one_error_line(capsys, 2, cli.main([a.replace("{run}", str(run)) for a in argv]))
    assert f"{run} is in use by pyrovae train (process {os.getpid()} on " in err
    assert snapshot(run) == before


def test_the_lock_of_a_killed_process_does_not_block(run: Path):
    hold = f"import fcntl, os, time; fd = os.open({str(run / LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
    hold += "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"
    with subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline() == "locked\n"
            with pytest.raises(InputError, match="is in use by"), run_lock(run, "train"):
                pass
        finally:
            holder.send_signal(signal.SIGKILL)  # the kernel releases its flock
    assert resume(run, "--epochs", "2") == 0


def test_two_new_runs_into_one_directory_cannot_both_start(trained, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"

    def other_starts_first(*args, **kwargs):  # between this process's checks and its first write
        out.mkdir()
        return build(*args, **kwargs)

    build = runs.build_model
    monkeypatch.setattr(runs, "build_model", other_starts_first)
    assert train(trained[0], out, "--epochs", "1") == 2
    assert list(out.iterdir()) == []  # the other process's run, untouched


# 6. One exception policy: bad input is status 2, a bug status 1, each one line


@pytest.mark.parametrize("error", [TypeError("unsupported operand"), AttributeError("no attribute 'x'")])
def test_an_unexpected_error_of_any_type_is_a_one_line_bug_report(run: Path, capsys, monkeypatch, error):
    def train_epoch(self, stop):
        raise error

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    err = one_error_line(capsys, 1, resume(run, "--epochs", "2"))
    assert f"unexpected {type(error).__name__}: " in err and "This is a bug in pyrovae" in err
    monkeypatch.setenv("PYROVAE_TRACEBACK", "1")
    with pytest.raises(type(error)):
        resume(run, "--epochs", "2")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.kl_anneal", 5, "train.kl_anneal must be a schedule such as constant"),
        ("train.seed", "0", "train.seed must be an integer, got '0'"),
        ("device", 5, "device must be a device name: auto, cpu, cuda or cuda:N, got 5"),
        ("train.beta", "1", "train.beta must be a finite number >= 0, got '1'"),
        ("hidden", [32.5], "hidden must be a list of positive integers, got (32.5,)"),  # a layout before 0.2
        ("binarize", "yes", "binarize must be true or false, got 'yes'"),
        ("spec", 5, "spec must be a spec table"),
        ("data_dir", 5, "data_dir must be a string, got 5"),
        ("train.batch_size", 0, "train.batch_size must be a positive integer, got 0"),
        ("learning_rate", 0.1, "learning_rate is not a setting of pyrovae"),
    ],
)
def test_a_wrongly_typed_config_json_is_named_as_config_json(run: Path, capsys, key: str, value, message: str):
    config = json.loads((run / "config.json").read_text())
    *parents, name = key.split(".")
    (config[parents[0]] if parents else config)[name] = value
    (run / "config.json").write_text(json.dumps(config))
    before = snapshot(run)
    err = one_error_line(capsys, 2, resume(run, "--epochs", "2"))
    assert err.startswith(f"pyrovae: error: {run / 'config.json'}: {message}") and " --" not in err.split(";")[0]
    assert "correct it in config.json, or delete it to have it rebuilt from checkpoint.pt" in err
    assert snapshot(run) == before


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


CVAE = """likelihood = "bernoulli"
hidden = [16]
[inputs]
y = {classes}
[[latent]]
name = "z"
size = 2
encoder = {{ given = ["x", "y"] }}
[x]
given = ["z", "y"]
"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (CVAE.format(classes=5), "spec: inputs.y = 5 classes, but data set 'mnist-5k' has labels 0..9; give y = 10"),
        (CVAE.format(classes=10).replace("y = 10", "y = 10\nc = 3"), "at most one label input is supported"),
        ("likelihood = 'bern\xe4oulli'".encode("latin-1"), "not UTF-8 text"),
    ],
    ids=["too-few-classes", "two-label-inputs", "not-utf8"],
)
def test_bad_specs_are_bad_input(tmp_path: Path, capsys, content: str | bytes, message: str):
    path = tmp_path / "model.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    argv = ["train", "--spec", str(path), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]
    err = one_error_line(capsys, 2, cli.main(argv))
    assert message in err and not (tmp_path / "run").exists()


def test_a_checkpoint_with_nan_parameters_is_refused(run: Path, tmp_path: Path, capsys):
    state = load_checkpoint(run / CHECKPOINT)
    saved = state["trainer"]["modules"]["guide"]  # the guide's state_dict
    name = next(iter(saved))
    saved[name] = torch.full_like(saved[name], float("nan"))
    save_checkpoint(run / CHECKPOINT, state)
    for argv in (["evaluate", str(run)], ["sample", str(run), "--out", str(tmp_path / "s.png")]):
        err = one_error_line(capsys, 2, cli.main(argv))
        assert f"parameter {name} holds NaN or infinite values" in err
    assert not (run / "bounds.csv").exists()


# 7. Smaller ones


def test_a_missing_or_damaged_config_json_is_rebuilt_from_the_checkpoint(run: Path, capsys):
    original = json.loads((run / "config.json").read_text())
    (run / "config.json").unlink()
    assert resume(run, "--epochs", "2") == 0
    assert f"{run / 'config.json'}: not found; using the copy of the settings" in capsys.readouterr().err
    (run / "config.json").write_text('{"dataset": "binarized-mn')
    assert resume(run, "--epochs", "3") == 0
    assert json.loads((run / "config.json").read_text()) == original | {"train": original["train"] | {"epochs": 3}}


def test_without_config_json_or_checkpoint_a_run_cannot_be_resumed(run: Path, capsys):
    (run / "config.json").unlink()
    (run / CHECKPOINT).unlink()
    err = one_error_line(capsys, 2, resume(run))
    assert "config.json: not found, and there is no checkpoint.pt to rebuild it from" in err


def test_force_refuses_a_directory_that_is_not_a_run(trained, tmp_path: Path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my own table\n")
    err = one_error_line(capsys, 2, train(trained[0], mine, "--force", "--epochs", "1"))
    assert f"--force: {mine} is not a pyrovae run directory" in err and "it holds metrics.csv" in err
    assert (mine / "metrics.csv").read_text() == "my own table\n" and len(list(mine.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(trained[0], empty, "--force", "--epochs", "1") == 0


@pytest.mark.parametrize("edit", ["drop", "change"])
def test_curves_refuse_a_metrics_csv_that_disagrees_with_the_checkpoint(run: Path, capsys, edit: str):
    assert resume(run, "--epochs", "2") == 0
    table = pd.read_csv(run / "metrics.csv")
    table = table.iloc[:1] if edit == "drop" else table.assign(valid_elbo=table["valid_elbo"] + 5)
    table.to_csv(run / "metrics.csv", index=False)
    capsys.readouterr()
    err = one_error_line(capsys, 2, cli.main(["plot", str(run), "--kind", "curves"]))
    expected = "1 epochs, but" if edit == "drop" else "column valid_elbo disagrees with"
    assert expected in err and f"pyrovae train --out {run} --resume rewrites it" in err
    assert resume(run) == 0 and cli.main(["plot", str(run), "--kind", "curves"]) == 0  # the advice works


def test_evaluate_refuses_a_read_only_run_before_computing(run: Path, capsys, monkeypatch):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    def bound_table(*args, **kwargs):
        raise AssertionError("computed before finding that bounds.csv cannot be written")

    monkeypatch.setattr(store.tempfile, "TemporaryFile", read_only)  # chmod cannot stop root, who runs CI
    monkeypatch.setattr(evaluate, "bound_table", bound_table)
    err = one_error_line(capsys, 2, cli.main(["evaluate", str(run)]))
    assert f"{run}: cannot write bounds.csv there (Permission denied)" in err


def test_resume_accepts_options_repeated_with_their_stored_values(trained, run: Path, capsys):
    data, _ = trained
    stored = ["--dataset", "binarized-mnist", "--data-dir", str(data), "--model", "vae", *SMALL, "--seed", "0"]
    assert resume(run, *stored, "--latent-dim", "3", "--epochs", "2") == 0
    err = one_error_line(capsys, 2, resume(run, "--latent-dim", "4", "--epochs", "3"))
    assert "--latent-dim: --resume continues with the settings in" in err


def test_resume_follows_a_moved_data_set_but_not_other_data(trained, run: Path, tmp_path: Path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(trained[0], moved)
    assert resume(run, "--data-dir", str(moved), "--epochs", "2") == 0
    assert json.loads((run / "config.json").read_text())["data_dir"] == str(moved)
    write_amat(moved / "binarized_mnist_train.amat", binary_images(80, seed=7))  # other images
    before = snapshot(run)
    err = one_error_line(capsys, 2, resume(run, "--epochs", "3"))
    assert "is not the one" in err and "was trained on" in err and snapshot(run) == before


def test_a_kill_after_moving_the_data_but_before_an_epoch_still_resumes(trained, run: Path, tmp_path: Path):
    moved = tmp_path / "moved"
    shutil.copytree(trained[0], moved)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"data_dir": str(moved)}))  # as --data-dir wrote it
    assert resume(run, "--epochs", "2") == 0  # the checkpoint still names the old directory
