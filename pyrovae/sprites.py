"""``sprites``: a procedural stand-in for dSprites, the disentanglement benchmark, with its factors as labels.

dSprites holds 64 x 64 binary images of one white shape on black, the full product of five factors of
variation: shape (square, ellipse, heart), scale (6 values in 0.5 .. 1), orientation (40 values in
0 .. 2 pi), x and y position (32 values each in 0 .. 1): 737,280 images, ordered as
``itertools.product`` of the factor indices (the file's ``latents_classes``). It cannot be downloaded
here, so :func:`sprites` draws the images with a deterministic renderer, and :func:`read_dsprites` reads
the real file where a user has it, selecting the same factor combinations for the same size and seed.

The renderer is an approximation of dSprites, not a copy: each shape is an implicit inequality evaluated
at the 64 x 64 pixel centres (a square ``max(|u|, |v|) <= 1``, an ellipse of axes 2 : 1, the heart curve
``(u^2 + v^2 - 1)^3 - u^2 v^3 <= 0``) in a frame rotated and scaled about the shape's centre, which
position moves from pixel 16 to 48 in each direction. The factors' values, the product order, the
shapes' sizes (about 20 pixels across at scale 1) and their symmetries (the square's 4-fold, the
ellipse's 2-fold, which make some orientations' images equal, as in the real data) follow dSprites;
exact pixel equality with the real images is not claimed.

References: L. Matthey, I. Higgins, D. Hassabis, A. Lerchner, dSprites: Disentanglement testing Sprites
dataset, 2017.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from pyrovae.formats import DataError

FACTORS = ("shape", "scale", "orientation", "x", "y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")  # the values of factor ``shape``, in dSprites' order
IMAGE_SHAPE = (1, 64, 64)  # (C, H, W)
DEFAULT_SIZE = 20_000  # images drawn when no size is given
PRODUCT_SIZE = math.prod(FACTOR_SIZES)  # 737,280: every combination of the factors
DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"  # the real data's file name
CHUNK = 512  # images rendered at once: (CHUNK, 64, 64) float32 temporaries of 8 MB, kept in cache (2x faster than 2048)
READ_CHUNK = 8192  # rows of a file's imgs converted at once: 32 MB of uint8, never a second copy of them all

# The factors' values, as dSprites' latents_values (float64, so that cos(pi) is -1 to the last bit).
SCALES = torch.linspace(0.5, 1, 6, dtype=torch.float64)
ORIENTATIONS = torch.linspace(0, 2 * math.pi, 40, dtype=torch.float64)  # 0 and 2 pi both: equal images
POSITIONS = torch.linspace(0, 1, 32, dtype=torch.float64)

# Geometry in pixels, the image spanning 0 .. 64 and pixel (i, j) centred at (j + 0.5, i + 0.5).
LOW, SPAN = 16.0, 32.0  # position 0 .. 1 puts the centre at pixel 16 .. 48 (x: left to right, y: top down)
SIZE = 10.0  # at scale 1: the square's and the ellipse's half-length; the frame spans 20 pixels
HEART_UNIT = 9.0  # pixels per unit of the heart curve, which is 2.28 units wide: 20.5 pixels at scale 1
HEART_CENTROID = 0.2935  # the heart curve's area centroid (0, 0.2935): its centre of rotation


def factor_indices(index: torch.Tensor) -> torch.Tensor:
    """The ``(N, 5)`` long factor indices of flat product indices ``index`` ``(N,)``: C order, shape slowest
    and y fastest, as dSprites' ``latents_classes[:, 1:]`` of row ``index``."""
    index = torch.as_tensor(index, dtype=torch.long)
    columns = []
    for size in reversed(FACTOR_SIZES):  # y first: the fastest factor is the remainder
        columns.append(index % size)
        index = index // size
    return torch.stack(columns[::-1], dim=1)


def flat_indices(factors: torch.Tensor) -> torch.Tensor:
    """The flat product indices ``(N,)`` of ``(N, 5)`` factor indices: the inverse of :func:`factor_indices`."""
    flat = torch.zeros(len(factors), dtype=torch.long)
    for column, size in zip(torch.as_tensor(factors, dtype=torch.long).unbind(1), FACTOR_SIZES, strict=True):
        flat = flat * size + column
    return flat


def subset_indices(size: int | str | None = None, *, seed: int) -> torch.Tensor:
    """The flat product indices ``(N,)`` that :func:`sprites` draws, in increasing (product) order.

    :param size: ``None``: :data:`DEFAULT_SIZE`; an int in 1 .. :data:`PRODUCT_SIZE` (or its decimal string):
        the first ``size`` of a permutation of the product seeded with ``seed``, so a smaller size draws a
        subset of a larger one's combinations; ``"all"``: the whole product.
    :raises DataError: any other size.
    """
    if size == "all":
        return torch.arange(PRODUCT_SIZE)
    n = check_size(size)
    order = torch.randperm(PRODUCT_SIZE, generator=torch.Generator().manual_seed(seed))
    return order[:n].sort().values


def check_size(size: int | str | None) -> int:
    """The number of images ``size`` asks for (``"all"``: :data:`PRODUCT_SIZE`).

    :raises DataError: not ``None``, ``"all"`` or a whole number in 1 .. :data:`PRODUCT_SIZE`.
    """
    if size is None:
        return DEFAULT_SIZE
    if size == "all":
        return PRODUCT_SIZE
    n = int(size) if isinstance(size, str) and size.isdecimal() else size
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= PRODUCT_SIZE:
        raise DataError(
            f"--data-size {size!r}: give a number of images in 1 .. {PRODUCT_SIZE:,}, or 'all' for every "
            f"combination of the sprites' factors (12 GB of float32)"
        )
    return n


def draw(
    shape: torch.Tensor, scale: torch.Tensor, orientation: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``(N, 4096)`` float32 binary images of sprites given by their factors' values, each ``(N,)``.

    :param shape: long, 0 square, 1 ellipse, 2 heart (:data:`SHAPES`).
    :param scale: the size relative to the largest (dSprites: 0.5 .. 1).
    :param orientation: radians, counter-clockwise on the screen, about the shape's centre.
    :param x: horizontal position 0 .. 1, left to right; ``y``: vertical, 0 .. 1, top to bottom.
    """
    shape = torch.as_tensor(shape, dtype=torch.long)
    c, s = (f(torch.as_tensor(orientation, dtype=torch.float64)).view(-1, 1, 1) for f in (torch.cos, torch.sin))
    grid = torch.arange(64, dtype=torch.float64) + 0.5  # pixel centres
    dx = grid.view(1, 1, 64) - (LOW + SPAN * torch.as_tensor(x, dtype=torch.float64)).view(-1, 1, 1)  # (N, 1, 64)
    dy = (LOW + SPAN * torch.as_tensor(y, dtype=torch.float64)).view(-1, 1, 1) - grid.view(1, 64, 1)  # (N, 64, 1), up
    # The local frame rotated by -orientation, in units of the shape's size: u = (c dx + s dy) / size,
    # v = (c dy - s dx) / size. Each term is a (N, 1, 64) row or (N, 64, 1) column, so only the sums are
    # (N, 64, 64), and the terms are float32 only after the float64 trigonometry.
    unit = torch.tensor([SIZE, SIZE, HEART_UNIT], dtype=torch.float64)[shape]  # (N,) pixels per unit at scale 1
    size = (torch.as_tensor(scale, dtype=torch.float64) * unit).view(-1, 1, 1)
    terms = [(t / size).float() for t in (c * dx, s * dy, c * dy, -s * dx)]
    out = torch.empty(len(shape), 64, 64)
    for k, inside in enumerate((_square, _ellipse, _heart)):
        rows = (shape == k).nonzero().squeeze(1)
        if not len(rows):
            continue
        if rows[-1] - rows[0] + 1 == len(rows):  # consecutive, as in product order: slices, not gathers
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        a, b, d, e = (t[rows] for t in terms)
        mask = inside(a + b, d + e)
        out[rows] = mask if isinstance(rows, slice) else mask.float()  # a slice converts the bools as it copies
    return out.reshape(len(shape), -1)


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``max(|u|, |v|) <= 1``: a square 2 units wide, 4-fold symmetric."""
    return torch.maximum(u.abs_(), v.abs_()) <= 1


def _ellipse(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``u^2 + (2 v)^2 <= 1``: an ellipse 2 units long along u and 1 across, 2-fold symmetric."""
    return u.square_().add_(v.square_(), alpha=4) <= 1


def _heart(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(u^2 + v^2 - 1)^3 - u^2 v^3 <= 0`` with v measured from the curve's centroid: upright (lobes up, tip
    down) at orientation 0."""
    v = v.add_(HEART_CENTROID)
    u2, v2 = u.square_(), v.square()
    r = (u2 + v2).sub_(1)
    return r.square().mul_(r) <= u2.mul_(v2).mul_(v)


def render(factors: torch.Tensor) -> torch.Tensor:
    """``(N, 4096)`` float32 binary images of ``(N, 5)`` long factor indices (:data:`FACTORS`), rendered in
    chunks of :data:`CHUNK` images so that the temporaries stay bounded (the output is 16 kB an image)."""
    factors = torch.as_tensor(factors, dtype=torch.long)
    if factors.ndim != 2 or factors.shape[1] != len(FACTORS):
        raise ValueError(f"factors of shape {tuple(factors.shape)}; expected (N, {len(FACTORS)})")
    if ((factors < 0) | (factors >= torch.tensor(FACTOR_SIZES))).any():
        raise ValueError(f"factor indices out of range; factor sizes are {FACTOR_SIZES}")
    out = torch.empty(len(factors), math.prod(IMAGE_SHAPE))
    for start in range(0, len(factors), CHUNK):
        shape, scale, angle, x, y = factors[start : start + CHUNK].unbind(1)
        out[start : start + CHUNK] = draw(shape, SCALES[scale], ORIENTATIONS[angle], POSITIONS[x], POSITIONS[y])
    return out


def sprites(size: int | str | None = None, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural dSprites: ``(images, factors)``, images ``(N, 4096)`` float32 in {0, 1}, factors ``(N, 5)``
    long indices (:data:`FACTORS`), the combinations :func:`subset_indices` draws, in product order.

    :param size: ``None``: :data:`DEFAULT_SIZE` images; an int: that many distinct combinations, seeded with
        ``seed``; ``"all"``: the whole product, 737,280 images: 12 GB of float32 (rendered in chunks, but
        held at once), some tens of seconds to draw on two cores.
    :raises DataError: a bad size.
    """
    factors = factor_indices(subset_indices(size, seed=seed))
    return render(factors), factors


def read_dsprites(path: str | Path, size: int | str | None = None, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The real dSprites images of the combinations :func:`sprites` draws for the same size and seed, as the
    same ``(images, factors)`` pair (:func:`read_dsprites_at`).

    :raises DataError: a bad size, or a file :func:`read_dsprites_at` refuses.
    """
    flat = subset_indices(size, seed=seed)  # checks the size before the file is read
    return read_dsprites_at(path, flat), factor_indices(flat)


def read_dsprites_at(path: str | Path, flat: torch.Tensor) -> torch.Tensor:
    """The ``(N, 4096)`` float32 images of the flat product indices ``flat`` ``(N,)``, in that order, from a
    file of dSprites' layout.

    ``path`` is a ``.npz`` with arrays ``imgs`` ``(N, 64, 64)`` of 0/1 and ``latents_classes`` ``(N, 6)``
    (column 0 the constant colour): the real file (:data:`DSPRITES_FILE`, its rows in product order), or any
    file of that layout holding the combinations asked for, in any order. It is read with
    ``allow_pickle=False``; its pickled ``metadata`` entry is never read. The whole ``imgs`` array is
    decompressed (3 GB of uint8 for the real file); the rows asked for are converted in chunks.

    :raises DataError: an unreadable file, missing or misshapen arrays, factor indices out of range,
        combinations the file lacks, non-binary images.
    """
    classes, imgs = _read_npz(path)
    if (
        classes.ndim != 2
        or classes.shape[1] != 1 + len(FACTORS)
        or not np.issubdtype(classes.dtype, np.integer)
        or imgs.shape != (len(classes), *IMAGE_SHAPE[1:])
        or not (np.issubdtype(imgs.dtype, np.integer) or imgs.dtype == np.bool_)
    ):
        raise DataError(
            f"{path}: latents_classes of shape {classes.shape} ({classes.dtype}) and imgs of shape {imgs.shape} "
            f"({imgs.dtype}); {_LAYOUT}"
        )
    rows = _rows_of(path, classes[:, 1:], torch.as_tensor(flat, dtype=torch.long).numpy())
    out = torch.empty(len(rows), math.prod(IMAGE_SHAPE))
    for start in range(0, len(rows), READ_CHUNK):
        chunk = imgs[rows[start : start + READ_CHUNK]].reshape(-1, out.shape[1])
        if chunk.min() < 0 or chunk.max() > 1:
            raise DataError(f"{path}: imgs of values {chunk.min()} .. {chunk.max()}; dSprites' images are 0 or 1")
        out[start : start + READ_CHUNK] = torch.from_numpy(chunk)
    return out


_LAYOUT = (
    f"expected the dSprites layout ({DSPRITES_FILE}): arrays imgs (N, 64, 64) of integers 0/1 and integer "
    "latents_classes (N, 6), columns colour, shape, scale, orientation, x, y"
)


def _read_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``latents_classes`` and ``imgs`` of the ``.npz`` at ``path``, read without unpickling.

    :raises DataError: a file that is not a ``.npz``, lacks either array, or holds them as pickled objects.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read it as a .npz ({e}); {_LAYOUT}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a .npy: one array
        raise DataError(f"{path}: one array, not a .npz; {_LAYOUT}")
    with npz:
        missing = sorted({"imgs", "latents_classes"} - set(npz.files))
        if missing:
            raise DataError(f"{path}: no array {' or '.join(missing)} (it has {', '.join(npz.files)}); {_LAYOUT}")
        try:
            return npz["latents_classes"], npz["imgs"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # damaged, or pickled objects
            raise DataError(f"{path}: cannot read its arrays ({e}); {_LAYOUT}") from None


def _rows_of(path: str | Path, classes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The rows of a file's ``(N, 5)`` factor indices ``classes`` that hold the flat product indices ``wanted``.

    :raises DataError: indices out of range, or combinations of ``wanted`` that no row holds.
    """
    sizes = np.array(FACTOR_SIZES)
    if len(classes) and ((classes < 0) | (classes >= sizes)).any():
        raise DataError(f"{path}: latents_classes out of range; the factors' sizes are {FACTOR_SIZES}")
    flat = np.ravel_multi_index(tuple(classes.T), FACTOR_SIZES) if len(classes) else np.zeros(0, np.int64)
    row_of = np.full(PRODUCT_SIZE, -1, dtype=np.int64)  # flat index -> a row holding it (5.9 MB)
    row_of[flat] = np.arange(len(flat))
    rows = row_of[wanted]
    missing = int((rows < 0).sum())
    if missing:
        raise DataError(
            f"{path}: lacks {missing:,} of the {len(wanted):,} factor combinations drawn; give the complete "
            f"dSprites file ({DSPRITES_FILE}) or a smaller --data-size"
        )
    return rows
