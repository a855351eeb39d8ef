"""File formats of the data sets, read and checked: binarized MNIST's ``.amat`` text, MNIST's IDX files.

Each reader refuses a file that does not fit its format with a :class:`DataError` naming
the file, the first bad place in it and the fix, before any of it reaches training.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch

from pyrovae.errors import InputError


class DataError(InputError):
    """A data set cannot be loaded; the message names the problem and the fix."""


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


MNIST_SHAPE = (28, 28)  # the images of mnist and fashion-mnist


MNIST_CLASSES = 10


def replace_hint(name: str, path: Path) -> str:
    """The fix for a damaged torchvision file."""
    return (
        f"replace it with the real {name} file {path.name} (or delete the {path.parent} folder's files "
        "to have them downloaded again when online)"
    )


def check_idx_files(name: str, images: Path, labels: Path) -> None:
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
                f"unsigned bytes in {ndim} dimension{'s' * (ndim > 1)} starts {magic.hex()}); "
                f"{replace_hint(name, path)}"
            )
        dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        expected = len(magic) + 4 * ndim + math.prod(dims)
        if len(header) < 4 + 4 * ndim or size != expected:
            shape = " x ".join(map(str, dims))
            raise DataError(
                f"{path}: {size} bytes, but its header declares {shape} {what} ({expected} bytes): "
                f"the file is truncated or damaged; {replace_hint(name, path)}"
            )


def check_image_labels(name: str, paths: tuple[Path, Path], images: torch.Tensor, targets: torch.Tensor) -> None:
    """28 x 28 images, as many labels as images, every label a class 0..9."""
    image_path, label_path = paths
    if images.ndim != 3 or tuple(images.shape[1:]) != MNIST_SHAPE:
        size = " x ".join(map(str, images.shape[1:]))
        raise DataError(
            f"{image_path}: images of {size} pixels, but {name} has 28 x 28 images; {replace_hint(name, image_path)}"
        )
    if targets.ndim != 1 or len(targets) != len(images):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} {len(targets)} labels; they pair one to one: "
            f"replace both with the files of one copy of {name}"
        )
    if len(images) == 0:
        raise DataError(f"{image_path}: no images; {replace_hint(name, image_path)}")
    bad = (targets < 0) | (targets >= MNIST_CLASSES)
    if bad.any():
        raise DataError(
            f"{label_path}: label {int(targets[bad][0])} is not a class 0..{MNIST_CLASSES - 1}; "
            f"{replace_hint(name, label_path)}"
        )
