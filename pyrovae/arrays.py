"""A user's data from a file: NumPy (``.npy``, ``.npz``), PyTorch (``.pt``), a numeric table (``.csv``, ``.tsv``),
or a folder of images (:mod:`pyrovae.images`).

Each file gives the splits of a data set, ``(N, *shape)`` arrays: a single array (split into train
and test with a fixed seed, ``test_fraction`` of the rows for the test split), or arrays named
``train``, ``test`` and optionally ``valid`` (an ``.npz``, or a ``.pt`` dict), with their class labels
as ``train_labels``, ``test_labels``, ... (``labels`` beside a single array); a table's labels are
the column ``label_column`` names (a header name, or a 0-based index). A datapoint of shape
``(H, W)`` or ``(C, H, W)`` is an image and keeps that shape for figures and convolutional networks;
a vector of D values is shown as a 1 x D strip. Nothing in a file is executed: NumPy files are read
with ``allow_pickle=False``, PyTorch files with ``weights_only=True``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pyrovae.formats import DataError
from pyrovae.images import read_image_folder

SUFFIXES = (".npy", ".npz", ".pt", ".csv", ".tsv")
SPLITS = ("train", "test", "valid")


def is_data_file(name: str) -> bool:
    """Whether ``name`` names a data file (by its suffix) or a folder of images (an existing directory),
    rather than a built-in data set (whose names win over a directory of the same name: write ``./mnist``)."""
    from pyrovae.data import DATASETS  # data imports this module

    return Path(name).suffix.lower() in SUFFIXES or (name not in DATASETS and Path(name).is_dir())


def read_splits(
    path: str | Path, *, test_fraction: float = 0.1, seed: int = 0, label_column: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], tuple[int, ...]]:
    """The splits ``{name: (N, D) float tensor}`` in ``path``, their labels ``{name: (N,) long tensor}`` (empty
    for unlabelled data) and the shape of one datapoint ``(C, H, W)``.

    :raises DataError: naming the file and the problem: a missing or unreadable file, arrays of different
        datapoint shapes, non-numeric or non-finite values, labels that are not class indices, too few rows.
    """
    path = Path(path)
    if path.is_dir():
        if label_column is not None:
            raise DataError(f"--label-column applies to a table (.csv, .tsv); {path}'s labels are its class folders")
        arrays = read_image_folder(path)
    elif path.is_file():
        arrays = _read(path, label_column)
    else:
        raise DataError(
            f"--dataset {path}: no such file; give a data file ({', '.join(SUFFIXES)}), a folder of images or a "
            "data set name"
        )
    if set(arrays) <= {"data", "labels"}:
        arrays = _split(arrays, test_fraction, seed, path)
    names = {k.removesuffix("_labels") for k in arrays}
    if (
        sorted(names - set(SPLITS))
        or not {"train", "test"} <= set(arrays)
        or any(f"{k}_labels" in arrays for k in names - set(arrays))
    ):
        raise DataError(
            f"{path}: arrays {sorted(arrays)}; give one array (and labels), or arrays named train, test (and "
            "valid), with their labels as train_labels, test_labels, ..."
        )
    data = {k: a for k, a in arrays.items() if not k.endswith("_labels")}
    shapes = {name: tuple(a.shape[1:]) for name, a in data.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{path}: the splits' datapoints differ in shape ({shapes}); give one shape")
    splits = {name: _checked(a, f"{path}, split {name!r}") for name, a in data.items()}
    labels = {k.removesuffix("_labels"): a for k, a in arrays.items() if k.endswith("_labels")}
    return (
        splits,
        {k: _labels(a, len(splits[k]), f"{path}, {k}_labels") for k, a in labels.items()},
        _image_shape(shapes["train"]),
    )


def _read(path: Path, label_column: str | None) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if label_column is not None and suffix not in (".csv", ".tsv"):
        raise DataError(f"--label-column applies to a table (.csv, .tsv); {path.name}'s labels are its *_labels arrays")
    try:
        if suffix == ".npy":
            return {"data": np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return _named({k: f[k] for k in f.files})
        if suffix == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if torch.is_tensor(loaded):
                return {"data": loaded.numpy()}
            if isinstance(loaded, dict) and all(torch.is_tensor(v) for v in loaded.values()):
                return _named({str(k): v.numpy() for k, v in loaded.items()})
            raise DataError(f"{path}: holds a {type(loaded).__name__}; save a tensor or a dict of tensors")
        return _table(path, "\t" if suffix == ".tsv" else ",", label_column)
    except DataError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError) as e:
        raise DataError(f"{path}: cannot read it as a {suffix} file ({str(e).splitlines()[0]})") from None


def _named(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A file's arrays, a single one (whatever its name, beside ``labels``) as ``data``."""
    rest = [k for k in arrays if k != "labels"]
    if len(rest) == 1 and rest[0] not in SPLITS:
        return {"data": arrays[rest[0]], **({"labels": arrays["labels"]} if "labels" in arrays else {})}
    return arrays


def _table(path: Path, sep: str, label_column: str | None) -> dict[str, np.ndarray]:
    """The numeric columns of a table with an optional header row (one whose fields are not all numbers), and
    the column ``label_column`` (a header name or a 0-based index) as the labels."""
    import pandas as pd

    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\n").split(sep)
    header = not all(_is_number(field) for field in first)
    table = pd.read_csv(path, sep=sep, header=0 if header else None)
    table.columns = [str(c) for c in table.columns]
    arrays = {}
    if label_column is not None:
        column = label_column if label_column in table.columns else None
        if column is None and label_column.isdigit() and int(label_column) < len(table.columns):
            column = table.columns[int(label_column)]
        if column is None:
            raise DataError(f"--label-column {label_column}: {path.name} has no such column ({list(table.columns)})")
        arrays["labels"] = table.pop(column).to_numpy()
    text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        raise DataError(f"{path}: column {text[0]!r} is not numeric; every column must hold numbers")
    return {"data": table.to_numpy(dtype=np.float32), **arrays}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split(arrays: dict[str, np.ndarray], test_fraction: float, seed: int, path: Path) -> dict[str, np.ndarray]:
    """One array (and its labels) split into train and test rows by a seeded permutation."""
    x = arrays["data"]
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    n_test = math.ceil(len(x) * test_fraction)
    if len(x) - n_test < 1:
        raise DataError(f"{path}: {len(x)} rows are too few to split off a test split; give more data")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).numpy()
    split = {"train": x[order[n_test:]], "test": x[order[:n_test]]}
    if "labels" in arrays:
        y = arrays["labels"]
        if len(y) != len(x):
            raise DataError(f"{path}: {len(x)} rows but {len(y)} labels; give one label per row")
        split |= {"train_labels": y[order[n_test:]], "test_labels": y[order[:n_test]]}
    return split


def _checked(a: np.ndarray, where: str) -> torch.Tensor:
    """``a`` as a ``(N, D)`` float32 tensor, checked to be numeric, finite and non-empty."""
    if a.dtype.kind not in "biuf" or a.ndim < 2 or len(a) == 0:
        raise DataError(f"{where}: an array of dtype {a.dtype} and shape {a.shape}; give numbers, (N, D) with N > 0")
    x = torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32).reshape(len(a), -1)
    if not torch.isfinite(x).all():
        raise DataError(f"{where}: NaN or infinite values are not data; fix or drop those rows")
    return x


def _labels(a: np.ndarray, n: int, where: str) -> torch.Tensor:
    """``a`` as ``(n,)`` class indices 0, 1, ..., checked."""
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:  # a column
        a = a.reshape(-1)
    whole = a.dtype.kind in "biuf" and bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)) and np.all(a >= 0))
    if a.shape != (n,) or not whole:
        raise DataError(f"{where}: labels must be {n} class indices 0, 1, 2, ... (one per row), got shape {a.shape}")
    return torch.as_tensor(a.astype(np.int64))


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A datapoint's ``(C, H, W)``: an image as it is, a vector of D values as a 1 x 1 x D strip."""
    if len(shape) == 1:
        return (1, 1, shape[0])
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    raise DataError(f"datapoints of shape {shape}: give vectors (N, D) or images (N, H, W) or (N, C, H, W)")
