"""A folder of images as --dataset (torchvision's ImageFolder layout): splits, classes, channels, errors."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pyrovae import cli
from pyrovae.data import DataError, load_dataset

from conftest import SMALL, one_error_line


def write_images(folder: Path, n: int, *, size: tuple[int, int] = (6, 8), mode: str = "L", seed: int = 0) -> list:
    """``n`` random PNGs of ``size`` (width, height) in ``folder``; returns their pixel arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    arrays = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]
    for i, a in enumerate(arrays):
        Image.fromarray(a, mode=mode).save(folder / f"{i:03d}.png")
    return arrays


def test_split_and_class_folders_give_splits_and_labels(tmp_path: Path):
    pixels = {}
    for split, n in (("train", 5), ("test", 2)):
        for c, name in enumerate(("cat", "dog")):
            pixels[split, c] = write_images(tmp_path / split / name, n, seed=10 * c + n)
    data = load_dataset(str(tmp_path), binarize=False)
    assert data.image_shape == (1, 8, 6) and data.splits["train"].shape == (10, 48)
    assert data.labels["train"].tolist() == [0] * 5 + [1] * 5 and data.labels["test"].tolist() == [0, 0, 1, 1]
    expected = torch.as_tensor(np.stack(pixels["test", 1]), dtype=torch.float32).reshape(2, -1) / 255
    assert torch.allclose(data.splits["test"][2:], expected)  # each image's pixels in [0, 1], in file order


def test_a_flat_folder_of_colour_images_is_split_with_a_seed(tmp_path: Path):
    write_images(tmp_path / "pics", 8, mode="RGB")
    write_images(tmp_path / "pics", 2, seed=3)  # overwrites two with grey images: all are then read as RGB
    data = load_dataset(str(tmp_path / "pics"), binarize=False, test_fraction=0.25)
    assert data.image_shape == (3, 8, 6) and data.splits["train"].shape == (6, 144) and not data.labels
    assert data.splits["test"].shape == (2, 144)
    again = load_dataset(str(tmp_path / "pics"), binarize=False, test_fraction=0.25)
    assert torch.equal(again.splits["test"], data.splits["test"])


def test_an_image_folder_trains_evaluates_samples_and_plots(tmp_path: Path):
    for split, n in (("train", 40), ("valid", 10), ("test", 10)):
        for c in range(2):
            write_images(tmp_path / "images" / split / f"class{c}", n // 2, seed=c + n)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--dataset", str(tmp_path / "images"), "--model", "cvae", "--epochs", "1"]
    assert cli.main([*argv, *SMALL]) == 0  # a label-conditioned model: the class folders are its labels
    assert pd.read_csv(out / "metrics.csv")["valid_elbo"].notna().all()  # valid/ is monitored
    assert cli.main(["evaluate", str(out), "--k", "1,5"]) == 0
    assert cli.main(["sample", str(out), "--label", "1", "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["plot", str(out), "--kind", "reconstructions", "--out", str(tmp_path / "r.png")]) == 0
    with Image.open(tmp_path / "s.png") as image:
        assert image.size[0] > 6  # a grid of 8 x 6 images


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("sizes", "images of different sizes (6 x 8, and"),
        ("mixed", "holds images and sub-folders"),
        ("new class", "are not classes of the training split"),
        ("broken", "not a readable image"),
        ("empty", "no images"),
        ("no train", "but no train/"),
    ],
)
def test_bad_image_folders_are_refused_in_one_line(tmp_path: Path, capsys, layout: str, message: str):
    root = tmp_path / "images"
    if layout == "sizes":
        write_images(root, 3)
        write_images(root / "x", 1, size=(5, 5))
        (root / "x" / "000.png").rename(root / "odd.png")
        (root / "x").rmdir()
    elif layout == "mixed":
        write_images(root, 2)
        write_images(root / "a", 2)
    elif layout == "new class":
        write_images(root / "train" / "a", 2)
        write_images(root / "test" / "b", 2)
    elif layout == "broken":
        write_images(root, 2)
        (root / "bad.png").write_bytes(b"not a png")
    elif layout == "empty":
        root.mkdir()
    else:
        write_images(root / "test", 2)
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(str(root))
    err = one_error_line(capsys, 2, cli.main(["train", "--out", str(tmp_path / "run"), "--dataset", str(root)]))
    assert message in err and not (tmp_path / "run").exists()


def test_a_data_set_name_wins_over_a_folder_of_that_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "mnist-5k", 4)
    assert load_dataset("mnist-5k").splits["train"].shape == (4500, 784)  # the built-in data set
    assert load_dataset("./mnist-5k", binarize=False).splits["train"].shape[1] == 48  # the folder
