"""A user's folder of images (PNG, JPEG, ...), in torchvision's ``ImageFolder`` convention.

A folder is one of:

- ``train/``, ``test/`` and optionally ``valid/`` sub-folders, each a split;
- a split alone, divided into train and test rows with a fixed seed (``test_fraction`` of them).

A split is a folder of images (unlabelled), or of one sub-folder per class holding that class's
images (``ImageFolder``: the class names sorted give the labels 0, 1, ...; every split uses the
training split's classes). Every image must have the same size; grey-scale images stay one channel,
and if any image has colour every image is read as RGB (an alpha channel is dropped). Pixels are
scaled to [0, 1]. Images are decoded by Pillow; nothing in the folder is executed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from pyrovae.formats import DataError

SPLIT_FOLDERS = ("train", "test", "valid")
T = TypeVar("T")
GREY_MODES = ("1", "L", "LA", "P;L", "I;16", "I", "F")  # Pillow's modes without colour


def read_image_folder(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the folder ``path``: ``train``, ``test`` (and ``valid``) with their ``*_labels`` where
    the splits have class folders, or ``data`` (and ``labels``) for a folder that is one split; images
    ``(N, H, W)`` (grey) or ``(N, 3, H, W)`` (colour) in [0, 1].

    :raises DataError: no images, images and class folders side by side, a class of the test split the
        training split lacks, images of different sizes, or a file that is not a readable image.
    """
    splits = [name for name in SPLIT_FOLDERS if (path / name).is_dir()]
    if splits and "train" not in splits:
        raise DataError(f"{path}: has {', '.join(s + '/' for s in splits)} but no train/; add the training images")
    if not splits:
        files, labels, _ = _split_files(path, None)
        return {"data": _decode(files, path), **({"labels": labels} if labels is not None else {})}
    arrays, classes = {}, None
    for name in ("train", *(s for s in splits if s != "train")):
        files, labels, found = _split_files(path / name, classes)
        classes = found if name == "train" else classes
        arrays[name] = files
        if labels is not None:
            arrays[f"{name}_labels"] = labels
    shared = _decode([f for k in splits for f in arrays[k]], path)  # one channel count and size for all
    start = 0
    for name in splits:
        arrays[name], start = shared[start : start + len(arrays[name])], start + len(arrays[name])
    return arrays


def _split_files(folder: Path, classes: list[str] | None) -> tuple[list[str], np.ndarray | None, list[str] | None]:
    """The image files of one split folder, their labels (``None`` without class folders) and its classes.

    :param classes: the training split's class names, which a later split's class folders must be among.
    """
    images = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if images and folders:
        raise DataError(
            f"{folder}: holds images and sub-folders ({folders[0]}/, ...); put every image in its class's folder "
            "(ImageFolder's layout), or none in sub-folders"
        )
    if images:
        return images, None, None
    if not folders:
        raise DataError(f"{folder}: no images ({', '.join(IMG_EXTENSIONS)}) and no class folders in it")
    found, _ = find_classes(str(folder))
    if classes is not None and set(found) - set(classes):
        raise DataError(
            f"{folder}: class folders {sorted(set(found) - set(classes))} are not classes of the training split "
            f"({', '.join(classes)}); give every split the training split's classes"
        )
    names = classes or found
    try:
        samples = make_dataset(str(folder), {c: names.index(c) for c in found}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:  # a class folder without images
        raise DataError(f"{folder}: {str(e).splitlines()[0]}") from None
    return [f for f, _ in samples], np.array([y for _, y in samples], dtype=np.int64), names


def _decode(files: list[str], root: Path) -> np.ndarray:
    """The images of ``files`` as one float32 array in [0, 1]: ``(N, H, W)`` if all are grey, else ``(N, 3, H, W)``.

    Two passes: the headers (modes and sizes, cheap) decide the channels and check the sizes, then each
    image is decoded and converted in turn.
    """
    headers = [_open(file, lambda image: (image.mode, image.size)) for file in files]
    grey = all(mode in GREY_MODES for mode, _ in headers)
    first = headers[0][1]
    odd = next((i for i, (_, size) in enumerate(headers) if size != first), None)
    if odd is not None:
        size = headers[odd][1]
        raise DataError(
            f"{root}: images of different sizes ({first[0]} x {first[1]}, and {files[odd]} of {size[0]} x "
            f"{size[1]}); resize them all to one size"
        )
    mode = "L" if grey else "RGB"
    pixels = np.stack([_open(f, lambda image: np.asarray(image.convert(mode), dtype=np.float32)) for f in files])
    pixels /= 255
    return pixels if grey else pixels.transpose(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)


def _open(file: str, read: Callable[[Image.Image], T]) -> T:
    """``read`` of the image in ``file``, or a :class:`DataError` naming a file that is not a readable image."""
    try:
        with Image.open(file) as image:
            return read(image)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{file}: not a readable image ({str(e).splitlines()[0]}); replace or remove it") from None
