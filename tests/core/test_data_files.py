"""A user's data from a file: --dataset PATH for .npy, .npz, .pt, .csv and .tsv, and Dataset.from_tensors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pyrovae import cli
from pyrovae.data import DataError, Dataset, load_dataset

from conftest import one_error_line


def counts(n: int = 200, d: int = 12, seed: int = 0) -> np.ndarray:
    """A seeded Poisson factor model: rates exp(W h) of a 2-dimensional h."""
    rng = np.random.default_rng(seed)
    return rng.poisson(np.exp(rng.normal(size=(n, 2)) @ rng.normal(size=(2, d)) * 0.5 + 0.5)).astype(np.int64)


def test_a_count_file_trains_evaluates_samples_and_plots_from_the_command_line(tmp_path: Path, capsys):
    np.save(tmp_path / "counts.npy", counts())
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--dataset", str(tmp_path / "counts.npy"), "--likelihood", "poisson"]
    assert cli.main([*argv, "--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--no-progress"]) == 0
    assert Path(pd.read_json(out / "config.json", typ="series")["dataset"]).is_absolute()
    assert cli.main(["evaluate", str(out), "--k", "1,10"]) == 0
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")
    assert bounds["images"].iloc[0] == 20 and bounds.loc[10, "bound"] > bounds.loc[1, "bound"]  # 10% held out
    assert cli.main(["sample", str(out), "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["plot", str(out), "--kind", "latent-map", "--out", str(tmp_path / "m.png")]) == 0
    capsys.readouterr()
    default = ["train", "--out", str(tmp_path / "run2"), "--dataset", str(tmp_path / "counts.npy"), "--epochs", "1"]
    err = one_error_line(capsys, 2, cli.main(default))
    assert "split 'train': the bernoulli likelihood needs binary data" in err  # counts under the default likelihood
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".csv", ".tsv", ".npy"])
def test_every_format_gives_the_same_splits(tmp_path: Path, suffix: str):
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    path = tmp_path / f"data{suffix}"
    if suffix == ".npz":
        np.savez(path, train=x[:40], test=x[40:])
    elif suffix == ".pt":
        torch.save({"train": torch.from_numpy(x[:40]), "test": torch.from_numpy(x[40:])}, path)
    elif suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        pd.DataFrame(x, columns=list("abcd")).to_csv(path, sep=sep, index=False)  # with a header row
    else:
        np.save(path, x)
    data = load_dataset(str(path))
    if suffix == ".npy":  # one array: a seeded 10% test split
        assert data.splits["test"].shape == (5, 4) and data.splits["train"].shape == (45, 4)
        torch.testing.assert_close(load_dataset(str(path)).splits["test"], data.splits["test"])
        assert sorted(torch.cat([data.splits["train"], data.splits["test"]])[:, 0].tolist()) == sorted(x[:, 0])
    elif suffix in (".csv", ".tsv"):
        assert data.splits["train"].shape[1] == 4
    else:
        torch.testing.assert_close(data.splits["test"], torch.from_numpy(x[40:]))
    assert data.image_shape == (1, 1, 4) and not data.dynamic  # values outside [0, 1]: never binarized


def test_a_headerless_table_keeps_its_first_row_and_images_keep_their_shape(tmp_path: Path):
    (tmp_path / "t.csv").write_text("1,2,3\n4,5,6\n7,8,9\n10,11,12\n")
    data = load_dataset(str(tmp_path / "t.csv"), test_fraction=0.25)
    assert len(data.splits["train"]) + len(data.splits["test"]) == 4
    images = (np.random.default_rng(0).random((30, 6, 5)) > 0.5).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    data = load_dataset(str(tmp_path / "images.npy"))
    assert data.image_shape == (1, 6, 5) and data.data_dim == 30
    grey = np.random.default_rng(0).random((30, 6))
    np.save(tmp_path / "grey.npy", grey)
    assert load_dataset(str(tmp_path / "grey.npy")).dynamic == {"train"}  # in [0, 1]: binarized per pass


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: np.save(p / "d.npy", np.array([[1.0, np.nan]] * 10)), "NaN or infinite values"),
        (lambda p: np.save(p / "d.npy", np.array([{"a": 1}] * 10), allow_pickle=True), "cannot read it as a .npy"),
        (lambda p: np.savez(p / "d.npz", train=np.zeros((5, 3)), test=np.zeros((5, 4))), "differ in shape"),
        (lambda p: np.savez(p / "d.npz", training=np.zeros((5, 3)), test=np.zeros((5, 3))), "arrays named train"),
        (lambda p: (p / "d.csv").write_text("a,b\n1,x\n2,y\n"), "column 'b' is not numeric"),
        (lambda p: torch.save([torch.zeros(3)], p / "d.pt"), "save a tensor or a dict of tensors"),
    ],
)
def test_a_bad_data_file_is_refused_by_name(tmp_path: Path, write, message: str):
    write(tmp_path)
    (path,) = tmp_path.iterdir()
    with pytest.raises(DataError, match=message):
        load_dataset(str(path))


def test_a_missing_file_or_an_unknown_name_is_one_line(tmp_path: Path, capsys):
    err = one_error_line(capsys, 2, cli.main(["train", "--out", str(tmp_path / "r"), "--dataset", "nope.npy"]))
    assert "nope.npy: no such file; give a data file (.npy, .npz, .pt, .csv, .tsv)" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--out", str(tmp_path / "r"), "--dataset", "nope"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "invalid choice: 'nope' (choose from 'mnist-5k'" in err and "or give a data file: .npy" in err


def test_tensors_a_user_has_become_a_data_set():
    x = torch.rand(40, 6)
    data = Dataset.from_tensors(x, labels={"train": torch.zeros(36), "test": torch.ones(4)}, binarize=True)
    assert data.splits["train"].shape == (36, 6) and data.splits["test"].shape == (4, 6)  # the last 10% held out
    assert data.dynamic == {"train"} and ((data.splits["test"] == 0) | (data.splits["test"] == 1)).all()
    assert data.labels_of("test").dtype == torch.long and data.image_shape == (1, 1, 6)
    with pytest.raises(DataError, match="same number of values per row"):
        Dataset.from_tensors(x, torch.rand(4, 5))


def test_labels_come_from_labels_arrays_or_a_table_column(tmp_path: Path, capsys):
    rng = np.random.default_rng(0)
    x, y = (rng.random((60, 16)) > 0.5).astype(np.float32), rng.integers(0, 3, 60)
    np.savez(tmp_path / "l.npz", x, labels=y)  # one array and its labels: split together
    data = load_dataset(str(tmp_path / "l.npz"))
    assert data.labels_of("test").shape == (6,) and data.labels_of("train").dtype == torch.long
    rows = {tuple(r.tolist()): c for r, c in zip(x, y, strict=True)}
    assert all(rows[tuple(r.tolist())] == c for r, c in zip(data.splits["test"], data.labels_of("test"), strict=True))
    table = pd.DataFrame(x[:, :4], columns=list("abcd")).assign(digit=y)
    table.to_csv(tmp_path / "t.csv", index=False)
    for column in ("digit", "4"):
        labelled = load_dataset(str(tmp_path / "t.csv"), label_column=column)
        assert labelled.data_dim == 4 and labelled.labels_of("train").shape == (54,)
    with pytest.raises(DataError, match="no such column"):
        load_dataset(str(tmp_path / "t.csv"), label_column="colour")
    np.savez(tmp_path / "bad.npz", x, labels=y + 0.5)
    with pytest.raises(DataError, match="train_labels: labels must be 54 class indices"):
        load_dataset(str(tmp_path / "bad.npz"))
    out = tmp_path / "run"
    cvae = ["train", "--model", "cvae", "--hidden", "8", "--latent-dim", "2", "--epochs", "1", "--no-progress"]
    assert cli.main([*cvae, "--out", str(out), "--dataset", str(tmp_path / "l.npz")]) == 0  # conditioned on y
    assert cli.main(["sample", str(out), "--label", "2", "--out", str(tmp_path / "two.png")]) == 0
    np.save(tmp_path / "plain.npy", x)
    err = one_error_line(
        capsys, 2, cli.main([*cvae, "--out", str(tmp_path / "r2"), "--dataset", str(tmp_path / "plain.npy")])
    )
    assert "has no labels; a label input needs a labelled data set" in err and "--label-column" in err
    assert not (tmp_path / "r2").exists()
