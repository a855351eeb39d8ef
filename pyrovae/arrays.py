"""A user's data from a file: NumPy (``.npy``, ``.npz``), PyTorch (``.pt``) or a numeric table (``.csv``, ``.tsv``).

Each file gives the splits of a data set, ``(N, *shape)`` arrays: a single array (split into train
and test with a fixed seed, ``test_fraction`` of the rows for the test split), or arrays named
``train``, ``test`` and optionally ``valid`` (an ``.npz``, or a ``.pt`` dict). A datapoint of shape
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

SUFFIXES = (".npy", ".npz", ".pt", ".csv", ".tsv")
SPLITS = ("train", "test", "valid")


def is_data_file(name: str) -> bool:
    """Whether ``name`` names a data file (by its suffix) rather than a built-in data set."""
    return Path(name).suffix.lower() in SUFFIXES


def read_splits(path: str | Path, *, test_fraction: float = 0.1, seed: int = 0) -> tuple[dict, tuple[int, ...]]:
    """The splits ``{name: (N, D) float tensor}`` in ``path`` and the shape of one datapoint ``(C, H, W)``.

    :raises DataError: naming the file and the problem: a missing or unreadable file, an unknown
        suffix, arrays of different datapoint shapes, non-numeric or non-finite values, too few rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--dataset {path}: no such file; give a data file ({', '.join(SUFFIXES)}) or a data set name")
    arrays = _read(path)
    if set(arrays) == {"data"}:
        arrays = _split(arrays["data"], test_fraction, seed, path)
    unknown = sorted(set(arrays) - set(SPLITS))
    if unknown or "train" not in arrays:
        raise DataError(f"{path}: arrays {sorted(arrays)}; give one array, or arrays named train, test (and valid)")
    shapes = {name: tuple(a.shape[1:]) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{path}: the splits' datapoints differ in shape ({shapes}); give one shape")
    splits = {name: _checked(a, f"{path}, split {name!r}") for name, a in arrays.items()}
    return splits, _image_shape(shapes["train"])


def _read(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {"data": np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            return arrays if len(arrays) > 1 else {"data": next(iter(arrays.values()))}
        if suffix == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if torch.is_tensor(loaded):
                return {"data": loaded.numpy()}
            if isinstance(loaded, dict) and all(torch.is_tensor(v) for v in loaded.values()):
                return {str(k): v.numpy() for k, v in loaded.items()}
            raise DataError(f"{path}: holds a {type(loaded).__name__}; save a tensor or a dict of tensors")
        return {"data": _table(path, "\t" if suffix == ".tsv" else ",")}
    except DataError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError) as e:
        raise DataError(f"{path}: cannot read it as a {suffix} file ({str(e).splitlines()[0]})") from None


def _table(path: Path, sep: str) -> np.ndarray:
    """The numeric columns of a table with an optional header row (one whose fields are not all numbers)."""
    import pandas as pd

    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\n").split(sep)
    header = not all(_is_number(field) for field in first)
    table = pd.read_csv(path, sep=sep, header=0 if header else None)
    text = [str(c) for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        raise DataError(f"{path}: column {text[0]!r} is not numeric; every column must hold numbers")
    return table.to_numpy(dtype=np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split(x: np.ndarray, test_fraction: float, seed: int, path: Path) -> dict[str, np.ndarray]:
    """``x`` split into train and test rows by a seeded permutation."""
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    n_test = math.ceil(len(x) * test_fraction)
    if len(x) - n_test < 1:
        raise DataError(f"{path}: {len(x)} rows are too few to split off a test split; give more data")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).numpy()
    return {"train": x[order[n_test:]], "test": x[order[:n_test]]}


def _checked(a: np.ndarray, where: str) -> torch.Tensor:
    """``a`` as a ``(N, D)`` float32 tensor, checked to be numeric, finite and non-empty."""
    if a.dtype.kind not in "biuf" or a.ndim < 2 or len(a) == 0:
        raise DataError(f"{where}: an array of dtype {a.dtype} and shape {a.shape}; give numbers, (N, D) with N > 0")
    x = torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32).reshape(len(a), -1)
    if not torch.isfinite(x).all():
        raise DataError(f"{where}: NaN or infinite values are not data; fix or drop those rows")
    return x


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A datapoint's ``(C, H, W)``: an image as it is, a vector of D values as a 1 x 1 x D strip."""
    if len(shape) == 1:
        return (1, 1, shape[0])
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    raise DataError(f"datapoints of shape {shape}: give vectors (N, D) or images (N, H, W) or (N, C, H, W)")
