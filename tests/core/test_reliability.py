"""Run directories that stand on their own, bad data files named, and faults reported in one line."""

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pyrovae import cli, evaluate, run_config, runs, spec, store
from pyrovae.checkpoint import CHECKPOINT, atomic_write_text, load_checkpoint, save_checkpoint
from pyrovae.data import DataError, check_splits, load_dataset
from pyrovae.inference import Trainer

from conftest import SMALL, one_error_line, train


def resume(out: Path, *extra: str) -> int:
    return cli.main(["train", "--out", str(out), "--resume", "--no-progress", *extra])


# config.json: the whole model, an absolute data directory, the device used


def test_config_json_rebuilds_the_model_after_the_builtin_spec_changes(amat_dir: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "binarized-mnist", "--data-dir", str(amat_dir), "--out", str(out)]
    assert cli.main([*argv, "--hidden", "16", "--epochs", "1", "--no-progress"]) == 0  # latent size: the spec's 20
    config = json.loads((out / "config.json").read_text())  # the model resolved, whole: no option fields
    assert spec.parse(config["spec"]) == spec.with_options(spec.load("vae"), hidden=(16,))
    assert config["spec"]["latent"][0]["size"] == 20 and "hidden" not in config
    changed = tmp_path / "vae.toml"  # models/specs/vae.toml as a later version might have it
    changed.write_text(spec.builtin_path("vae").read_text().replace("size = 20", "size = 5"))
    monkeypatch.setattr(spec.reader, "builtin_path", lambda name: changed)
    assert spec.load("vae").latents[0].size == 5  # the built-in family now
    assert run_config.model_spec(store.load_run(out, "cpu").config).latents[0].size == 20  # the run's model
    assert cli.main(["evaluate", str(out), "--k", "1"]) == 0
    assert resume(out, "--epochs", "2") == 0


def test_configs_without_a_stored_spec_still_load(amat_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--epochs", "1") == 0
    old = json.loads((out / "config.json").read_text())  # as pyrovae wrote it before storing the spec:
    old.update(spec=None, latent_dim=3, hidden=[32], activation=None, likelihood=None, guide=None)  # the options
    for key in ("resolved_device", "model_file", "model_digest", "binarize"):
        del old[key]
    del old["train"]["objective_options"]  # and the objective's options beside it
    old["train"].update(particles=1, iwae_gradient="standard", alpha=0.5)
    (out / "config.json").write_text(json.dumps(old))
    state = load_checkpoint(out / CHECKPOINT)
    state["config"] = old
    save_checkpoint(out / CHECKPOINT, state)
    assert cli.main(["evaluate", str(out), "--k", "1"]) == 0
    assert resume(out, "--epochs", "2") == 0
    config = json.loads((out / "config.json").read_text())  # rewritten in this layout, the same run
    assert config["train"]["objective_options"] == {"num_particles": 1} and config["spec"]["latent"][0]["size"] == 3


def test_data_dir_is_stored_absolute_and_the_device_used_is_recorded(amat_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(amat_dir.parent)
    argv = ["train", "--dataset", "binarized-mnist", "--data-dir", amat_dir.name, "--out", "run"]
    assert cli.main([*argv, *SMALL, "--epochs", "1", "--device", "auto"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data_dir"] == str(amat_dir.resolve())
    assert config["device"] == "auto"  # as asked: --resume elsewhere picks that machine's device
    assert config["resolved_device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["evaluate", str(tmp_path / "run"), "--k", "1"]) == 0


# Files get the usual mode, not mkstemp's 0600


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_give_files_the_umask_mode(tmp_path: Path, umask: int):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_text(tmp_path / "a.txt", "y")  # rewritten: the same
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask


def test_run_files_are_readable_by_the_group(amat_dir: Path, tmp_path: Path):
    previous = os.umask(0o022)
    try:
        assert train(amat_dir, tmp_path / "run", "--epochs", "1") == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").iterdir()}
    assert set(modes.values()) == {0o644}, modes


# torchvision files: damaged, or of the wrong shape


def write_idx(path: Path, array: np.ndarray, *, cut: int = 0) -> None:
    """An uncompressed IDX file (the MNIST format): magic 0x08 0x0N, big-endian sizes, unsigned bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(data[: len(data) - cut])


def mnist_dir(root: Path, *, train_shape=(30, 28, 28), train_labels: int | np.ndarray = 30) -> Path:
    rng = np.random.default_rng(0)
    raw = root / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = rng.integers(0, 10, train_labels) if isinstance(train_labels, int) else train_labels
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, train_shape))
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 10))
    return root / "data"


def train_mnist(data: Path, out: Path) -> int:
    return cli.main(["train", "--dataset", "mnist", "--data-dir", str(data), "--out", str(out), *SMALL])


def test_garbage_torchvision_files_are_named(tmp_path: Path, capsys):
    data = mnist_dir(tmp_path)
    for path in (data / "MNIST" / "raw").iterdir():
        path.write_text("garbage\n")
    err = one_error_line(capsys, 2, train_mnist(data, tmp_path / "run"))
    assert f"{data}/MNIST/raw/train-images-idx3-ubyte: not an IDX file of images" in err
    assert "replace it with the real mnist file" in err
    assert not (tmp_path / "run").exists()


def test_a_damaged_labels_file_is_named(tmp_path: Path):
    data = mnist_dir(tmp_path)
    (data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x03garbage")  # says 3-D images
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: not an IDX file of labels \(it starts 00000803"):
        load_dataset("mnist", data_dir=data)


def test_a_truncated_torchvision_file_is_named(tmp_path: Path):
    data = mnist_dir(tmp_path)
    rng = np.random.default_rng(1)
    write_idx(data / "MNIST" / "raw" / "train-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)), cut=100)
    message = r"train-images-idx3-ubyte: 23436 bytes, but its header declares 30 x 28 x 28 images \(23536 bytes\)"
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", data_dir=data)


@pytest.mark.parametrize(
    ("shape", "labels", "message"),
    [
        ((30, 20, 20), 30, r"train-images-idx3-ubyte: images of 20 x 20 pixels, but mnist has 28 x 28 images"),
        ((30, 28, 28), 29, r"train-images-idx3-ubyte holds 30 images but \S+train-labels-idx1-ubyte 29 labels"),
        ((30, 28, 28), np.full(30, 12), r"train-labels-idx1-ubyte: label 12 is not a class 0..9"),
    ],
    ids=["20x20", "count", "label"],
)
def test_torchvision_files_of_the_wrong_shape_are_refused_before_anything_is_written(
    tmp_path: Path, capsys, shape, labels, message: str
):
    data = mnist_dir(tmp_path, train_shape=shape, train_labels=labels)
    err = one_error_line(capsys, 2, train_mnist(data, tmp_path / "run"))
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.rand(5, 783), r"split 'train': data of shape \(5, 783\); expected \(N, 784\)"),
        (torch.rand(0, 784), r"data of shape \(0, 784\); expected \(N, 784\) with N > 0"),
        (torch.full((5, 784), float("nan")), "NaN or infinite values are not data"),
        (torch.full((5, 784), 255.0), r"values in \[255, 255\], outside \[0, 1\]; scale the pixels"),
    ],
)
def test_every_split_is_checked(x: torch.Tensor, message: str):
    with pytest.raises(DataError, match=message):
        check_splits("mine", {"train": x}, {}, (1, 28, 28))


def test_labels_must_pair_with_images():
    with pytest.raises(DataError, match="5 images but labels of shape"):
        check_splits("mine", {"train": torch.rand(5, 784)}, {"train": torch.zeros(4)}, (1, 28, 28))
    check_splits("mine", {"train": torch.rand(5, 784)}, {"train": torch.zeros(5)}, (1, 28, 28))


# plot: a damaged or missing metrics.csv, figures a run cannot draw


@pytest.fixture
def trained(amat_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert train(amat_dir, out, "--epochs", "1") == 0
    return out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("metrics.csv", None, "metrics.csv: not found; curves need a run directory made by pyrovae train"),
        ("metrics.csv", "garbage\n", "metrics.csv: no column epoch, train_elbo"),
        ("metrics.csv", "", "metrics.csv: not a readable table (No columns to parse from file)"),
        ("metrics.csv", "epoch,train_elbo,test_elbo,reconstruction,kl,beta\n", "metrics.csv: no completed epoch yet"),
        ("metrics.csv", "epoch,train_elbo,test_elbo,reconstruction,kl,beta\n1,a,b,c,d,e\n", "non-numeric values"),
        ("bounds.csv", "k,bound\n1,2\n", "bounds.csv: no column stderr"),
    ],
)
def test_curves_of_a_damaged_run_name_the_file(trained: Path, capsys, name: str, content: str | None, message: str):
    if content is None:
        (trained / name).unlink()
    else:
        (trained / name).write_text(content)
    capsys.readouterr()
    err = one_error_line(capsys, 2, cli.main(["plot", str(trained), "--kind", "curves"]))
    assert err.startswith(f"pyrovae: error: {trained / name}: ") and message in err, err
    assert not (trained / "curves.png").exists()


def test_figures_an_autoencoder_cannot_draw_are_refused_in_one_line(amat_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "ae"
    assert train(amat_dir, out, "--epochs", "1", "--model", "ae") == 0
    capsys.readouterr()
    for kind in ("traverse", "kl-per-dim"):
        err = one_error_line(capsys, 2, cli.main(["plot", str(out), "--kind", kind]))
        assert "point-mass (autoencoder) guide" in err and "--kind latent-map" in err
    assert not (out / "traverse.png").exists()


# faults: out of memory, an unexpected error, leftovers of a kill


CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"
CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 313600000000 bytes. Error code 12 (Cannot allocate memory)"
)


def test_out_of_memory_in_training_is_one_line_and_keeps_the_checkpoint(trained: Path, capsys, monkeypatch):
    saved = (trained / CHECKPOINT).read_bytes()

    def step(self, x, beta):
        raise torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(Trainer, "step", step)
    capsys.readouterr()
    err = one_error_line(capsys, 1, resume(trained, "--epochs", "2"))
    assert err.startswith(f"pyrovae: error: out of memory (could not allocate 2.00 GiB): {trained / CHECKPOINT} (the")
    assert (
        f"(the last completed epoch) is kept; continue it with pyrovae train --out {trained} --resume --device cpu"
        in err
    )
    assert err.endswith("or start a new run with a smaller --particles, --batch-size, --hidden or --latent-dim\n")
    assert (trained / CHECKPOINT).read_bytes() == saved


def test_a_model_too_large_for_memory_is_one_line_and_writes_nothing(
    amat_dir: Path, tmp_path: Path, capsys, monkeypatch
):
    def build_model(*args, **kwargs):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(runs, "build_model", build_model)
    err = one_error_line(capsys, 1, train(amat_dir, tmp_path / "run", "--epochs", "1"))
    assert err == (
        "pyrovae: error: out of memory (could not allocate 292 GiB): nothing was written; "
        "use a smaller --particles, --batch-size, --hidden or --latent-dim\n"
    )
    assert not (tmp_path / "run").exists()


def test_out_of_memory_in_evaluate_suggests_a_smaller_chunk(trained: Path, capsys, monkeypatch):
    def bound_table(*args, **kwargs):
        raise torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(evaluate, "bound_table", bound_table)
    capsys.readouterr()
    err = one_error_line(capsys, 1, cli.main(["evaluate", str(trained)]))
    assert "use a smaller --chunk-size or --batch-size" in err


def test_an_unexpected_value_error_is_a_one_line_bug_report_not_bad_input(trained: Path, capsys, monkeypatch):
    saved = (trained / CHECKPOINT).read_bytes()

    def train_epoch(self, stop):
        raise ValueError("Expected parameter loc of distribution Normal\nto satisfy the constraint Real()")

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    capsys.readouterr()
    err = one_error_line(capsys, 1, resume(trained, "--epochs", "2"))
    assert "unexpected ValueError: Expected parameter loc of distribution Normal to satisfy" in err
    assert "This is a bug in pyrovae" in err and "PYROVAE_TRACEBACK=1" in err
    assert (trained / CHECKPOINT).read_bytes() == saved
    monkeypatch.setenv("PYROVAE_TRACEBACK", "1")
    with pytest.raises(ValueError, match="Expected parameter loc"):
        resume(trained, "--epochs", "2")


def test_resume_removes_temporary_files_of_snapshots_too(amat_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--epochs", "1", "--snapshot-epochs", "1,2") == 0
    leftovers = [".samples_e1.png.k2j3h4.tmp", ".reconstructions_e2.png.abcd1234.tmp", ".metrics.csv.x1y2.tmp"]
    for name in leftovers:
        (out / name).write_bytes(b"half a file")
    (out / "notes.tmp").write_text("mine")
    assert resume(out, "--epochs", "2") == 0
    assert not list(out.glob(".*.tmp")) and (out / "notes.tmp").read_text() == "mine"
    assert len(pd.read_csv(out / "metrics.csv")) == 2


def test_out_of_memory_while_loading_a_run_is_not_blamed_on_its_checkpoint(trained: Path, capsys, monkeypatch):
    def build_model(*args, **kwargs):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(store, "build_model", build_model)  # load_run builds the model
    capsys.readouterr()
    err = one_error_line(capsys, 1, cli.main(["sample", str(trained), "--out", str(trained.parent / "s.png")]))
    assert err.endswith("out of memory (could not allocate 292 GiB): use a smaller --n; the run is unchanged\n")
