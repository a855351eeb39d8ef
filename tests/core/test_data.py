from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.data import BINARIZE_SEED, DataError, Dataset, load_dataset, read_amat

from conftest import binary_images, write_amat


@pytest.mark.parametrize("suffix", [".amat", ".amat.gz"])
def test_read_amat_round_trips(tmp_path: Path, suffix: str):
    rows = binary_images(7)
    write_amat(tmp_path / f"x{suffix}", rows)
    x = read_amat(tmp_path / f"x{suffix}")
    assert x.shape == (7, 784) and x.dtype == torch.float32
    assert torch.equal(x, torch.as_tensor(rows, dtype=torch.float32))


def test_read_amat_rejects_grey_values(tmp_path: Path):
    (tmp_path / "x.amat").write_text(" ".join(["0.5"] * 784) + "\n")
    with pytest.raises(DataError, match=r"line 1: value 0\.5 is not binary"):
        read_amat(tmp_path / "x.amat")


def test_read_amat_rejects_wrong_width(tmp_path: Path):
    (tmp_path / "x.amat").write_text(" ".join(["1"] * 783) + "\n")
    with pytest.raises(DataError, match="line 1 has 783 values"):
        read_amat(tmp_path / "x.amat")


def amat_error(path: Path, lines: list[str]) -> str:
    """The message of the DataError that reading ``lines`` as an ``.amat`` file raises."""
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(DataError) as e:
        read_amat(path)
    return str(e.value)


def test_read_amat_rejects_a_short_line_followed_by_a_long_one(tmp_path: Path):
    # 783 + 785 values add up to 2 x 784: only a per-line check sees the shift
    message = amat_error(tmp_path / "x.amat", [" ".join(["1"] * 783), " ".join(["0"] * 785)])
    assert message == f"{tmp_path / 'x.amat'}: line 1 has 783 values; binarized MNIST has 784 (28 x 28) per line"


def test_read_amat_rejects_two_lines_joined_and_an_empty_line(tmp_path: Path):
    row = " ".join(["1"] * 784)
    message = amat_error(tmp_path / "x.amat", [row, row + " " + row, "", row])
    assert message.startswith(f"{tmp_path / 'x.amat'}: line 2 has 1568 values; binarized MNIST has 784")
    assert amat_error(tmp_path / "x.amat", [row, "  ", row]).startswith(f"{tmp_path / 'x.amat'}: line 2 is empty;")


@pytest.mark.parametrize("token", ["01", "10"])
def test_read_amat_rejects_a_token_of_two_characters(tmp_path: Path, token: str):
    # "01" and "10" each count as one value, so the line still has 784 of them
    message = amat_error(tmp_path / "x.amat", [" ".join([token] + ["0"] * 783)])
    assert message.startswith(f"{tmp_path / 'x.amat'}: line 1: {token!r} is not a single character 0 or 1")


def test_read_amat_ignores_blank_lines_at_the_end(tmp_path: Path):
    rows = binary_images(3)
    text = "".join(" ".join(map(str, row)) + "\n" for row in rows)
    (tmp_path / "x.amat").write_text(text + "\n  \n\t\n")
    assert torch.equal(read_amat(tmp_path / "x.amat"), torch.as_tensor(rows, dtype=torch.float32))


def test_binarized_mnist_loads_static_splits(amat_dir: Path):
    data = load_dataset("binarized-mnist", data_dir=amat_dir)
    assert {k: v.shape[0] for k, v in data.splits.items()} == {"train": 120, "valid": 40, "test": 40}
    assert not data.dynamic and not data.labels
    batches = list(data.train_batches(50, torch.Generator().manual_seed(0)))
    assert [b.shape[0] for b in batches] == [50, 50, 20]
    # static data is never re-binarized: every batch row is a training row
    assert torch.equal(torch.cat(batches).sum(0), data.splits["train"].sum(0))


def test_binarized_mnist_missing_files_name_the_directory(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlretrieve", _offline)
    with pytest.raises(DataError, match=str(tmp_path)) as e:
        load_dataset("binarized-mnist", data_dir=tmp_path)
    assert "binarized_mnist_train.amat" in str(e.value)


def _offline(*args, **kwargs):
    raise OSError("network unreachable")


def test_mnist_5k_split_is_fixed_and_labelled():
    a, b = load_dataset("mnist-5k"), load_dataset("mnist-5k")
    assert a.splits["train"].shape == (4500, 784) and a.splits["test"].shape == (500, 784)
    assert torch.equal(a.splits["test"], b.splits["test"])  # fixed split and binarization
    assert set(a.splits["test"].unique().tolist()) == {0.0, 1.0}
    assert a.dynamic == {"train"} and 0 < a.splits["train"].mean() < 1
    assert torch.bincount(a.labels["train"]).min() > 400  # shuffled before splitting, not by class


def test_dynamic_binarization_draws_afresh_each_pass():
    x = torch.full((10, 8), 0.5)
    data = Dataset("grey", {"train": x, "test": x}, dynamic=frozenset({"train"}))
    g = torch.Generator().manual_seed(0)
    first, second = next(data.train_batches(10, g)), next(data.train_batches(10, g))
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)


def test_eval_limit_takes_a_seeded_random_subset():
    x = torch.arange(100.0).repeat(3, 1).T  # rows ordered like the digit-sorted static test file
    data = Dataset("ordered", {"train": x, "test": x})
    subset = torch.cat(list(data.eval_batches("test", 7, limit=20)))
    assert subset.shape == (20, 3)
    assert not torch.equal(subset[:, 0], torch.arange(20.0))
    assert torch.equal(subset, torch.cat(list(data.eval_batches("test", 7, limit=20))))


def test_eval_batches_binarize_grey_splits_with_a_fixed_seed():
    x = torch.full((6, 5), 0.5)
    data = Dataset("grey", {"train": x, "test": x}, dynamic=frozenset({"train"}))
    a = torch.cat(list(data.eval_batches("train", 4)))
    expected = torch.bernoulli(x, generator=torch.Generator().manual_seed(BINARIZE_SEED))
    assert torch.equal(a, expected)


def _write_idx(path: Path, array: np.ndarray) -> None:
    # IDX: zero bytes, dtype code 0x08 (ubyte), number of dims, big-endian sizes, then data.
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_data_sets_read_the_raw_idx_layout(tmp_path: Path, name: str, folder: str):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    data = load_dataset(name, data_dir=tmp_path)
    assert data.splits["train"].shape == (30, 784) and data.labels["test"].shape == (10,)
    assert data.dynamic == {"train"} and set(data.splits["test"].unique().tolist()) <= {0.0, 1.0}
    grey = load_dataset(name, data_dir=tmp_path, binarize=False)
    assert not grey.dynamic and 0 < grey.splits["test"].mean() < 1


def test_unknown_data_set_lists_the_choices():
    with pytest.raises(DataError, match="mnist-5k"):
        load_dataset("cifar")
