"""The procedural dSprites (:mod:`pyrovae.sprites`): its factors, its geometry, the real file's reader, and
``load_dataset("sprites")``."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae import sprites as S
from pyrovae.data import SPLIT_SEED, DataError, Dataset, load_dataset


def images(rows: list[list[int]]) -> torch.Tensor:
    """``(N, 64, 64)`` images of factor index rows ``[shape, scale, orientation, x, y]``."""
    return S.render(torch.tensor(rows)).view(-1, 64, 64)


def centroids(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The foreground's centroid of ``(N, 64, 64)`` images: ``(column, row)`` in pixel indices, ``(N,)`` each."""
    grid = torch.arange(64, dtype=torch.float32)
    area = x.sum((1, 2))
    return (x.sum(1) * grid).sum(1) / area, (x.sum(2) * grid).sum(1) / area


def test_sprites_are_deterministic_and_seeded():
    x, f = S.sprites(200, seed=3)
    again, f_again = S.sprites(200, seed=3)
    assert torch.equal(x, again) and torch.equal(f, f_again)
    assert not torch.equal(S.sprites(200, seed=4)[1], f)
    # a smaller size draws a subset of a larger one's combinations, in product order
    flat = S.flat_indices(f)
    assert torch.equal(flat, flat.sort().values) and len(flat.unique()) == 200
    assert set(S.flat_indices(S.sprites(50, seed=3)[1]).tolist()) <= set(flat.tolist())


def test_images_and_factors_have_the_documented_shapes_and_values():
    x, f = S.sprites(200, seed=0)
    assert x.shape == (200, 4096) and x.dtype == torch.float32
    assert f.shape == (200, 5) and f.dtype == torch.long
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert (f >= 0).all() and (f < torch.tensor(S.FACTOR_SIZES)).all()
    assert torch.equal(x, S.render(f))
    order = torch.randperm(200, generator=torch.Generator().manual_seed(0))  # shapes interleaved: gathers
    assert torch.equal(x[order], S.render(f[order]))
    assert S.PRODUCT_SIZE == 737_280 and S.IMAGE_SHAPE == (1, 64, 64) and S.FACTORS[0] == "shape"


@pytest.mark.parametrize("index", [0, 1, 31, 32, 1024, 40_960, 123_457, 737_279])
def test_factor_indices_follow_itertools_product_order(index: int):
    expected = next(itertools.islice(itertools.product(*map(range, S.FACTOR_SIZES)), index, None))
    assert S.factor_indices(torch.tensor([index])).tolist() == [list(expected)]


def test_all_is_the_whole_product_in_order_without_rendering_it():
    flat = S.subset_indices("all", seed=0)
    assert torch.equal(flat, torch.arange(S.PRODUCT_SIZE))
    factors = S.factor_indices(flat)
    assert torch.equal(factors, torch.cartesian_prod(*(torch.arange(n) for n in S.FACTOR_SIZES)))
    assert torch.equal(S.flat_indices(factors), flat)
    assert S.check_size("all") == S.PRODUCT_SIZE and S.check_size(None) == S.DEFAULT_SIZE


@pytest.mark.parametrize("size", [0, -1, S.PRODUCT_SIZE + 1, 2.5, True, "some", "", "-3"])
def test_bad_sizes_raise_a_data_error_naming_the_fix(size):
    with pytest.raises(DataError, match=r"give a number of images in 1 \.\. 737,280, or 'all'"):
        S.sprites(size, seed=0)
    with pytest.raises(DataError, match="--data-size"):
        load_dataset("sprites", size=size)


def test_a_decimal_string_size_is_a_number():
    assert torch.equal(S.sprites("7", seed=1)[1], S.sprites(7, seed=1)[1])


def test_every_sprite_is_drawn_inside_the_frame():
    # the largest sprites in the corners at every orientation, and a random sample
    corners = [[k, 5, o, x, y] for k in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)]
    x = torch.cat([images(corners), S.sprites(200, seed=5)[0].view(-1, 64, 64)])
    assert (x.sum((1, 2)) >= 20).all()
    border = x[:, [0, -1], :].sum((1, 2)) + x[:, :, [0, -1]].sum((1, 2))
    assert (border == 0).all()


@pytest.mark.parametrize("shape", range(3))
def test_the_centroid_follows_the_position(shape: int):
    position = S.POSITIONS.float()
    for scale, orientation, other in ((0, 0, 7), (5, 13, 20), (3, 27, 31)):
        column, _ = centroids(images([[shape, scale, orientation, p, other] for p in range(32)]))
        _, row = centroids(images([[shape, scale, orientation, other, p] for p in range(32)]))
        for centre in (column, row):
            assert torch.corrcoef(torch.stack([centre, position]))[0, 1] > 0.999
            # pixel j is centred at j + 0.5: position 0 .. 1 is pixel 16 .. 48
            assert (centre - (S.LOW + S.SPAN * position - 0.5)).abs().max() < 0.6  # rasterized: up to half a pixel


@pytest.mark.parametrize("shape", range(3))
def test_the_area_grows_with_scale(shape: int):
    area = images([[shape, s, o, 16, 16] for s in range(6) for o in (0, 7)]).sum((1, 2)).view(6, 2)
    assert (area.diff(dim=0) > 0).all()
    assert ((area[-1] / area[0]) - 4).abs().max() < 0.4  # scale 1 / 0.5: the area 4 times as large


def differing(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many pixels of two images differ."""
    return int((a != b).sum())


def test_rotation_and_the_shapes_symmetries():
    def at(shape: int, angle: float) -> torch.Tensor:
        one = torch.ones(1, dtype=torch.float64)
        return S.draw(torch.tensor([shape]), one, one * angle, one * 0.4, one * 0.6)[0]

    ellipse = images([[1, 5, o, 12, 20] for o in (0, 1, 39)])
    assert differing(ellipse[0], ellipse[1]) > 10  # one orientation step (9.2 degrees) shows
    assert differing(at(1, 0), at(1, math.pi)) <= 4  # 2-fold symmetry
    assert differing(at(1, 0), at(1, math.pi / 2)) > 50
    assert differing(at(0, 0), at(0, math.pi / 2)) <= 4  # 4-fold symmetry
    assert differing(at(0, 0), at(0, math.pi / 4)) > 50
    assert differing(at(2, 0), at(2, math.pi)) > 50  # the heart has neither
    for shape in range(3):  # orientations 0 and 2 pi: the same image, as in dSprites
        pair = images([[shape, 5, o, 12, 20] for o in (0, 39)])
        assert differing(pair[0], pair[1]) <= 4
    heart = at(2, 0).view(64, 64)
    rows = heart.sum(1).nonzero().flatten()
    assert heart[rows[0]].sum() > heart[rows[-1]].sum()  # upright: lobes at the top, the tip at the bottom


def test_the_three_shapes_differ():
    x = images([[k, 4, 9, 10, 21] for k in range(3)])
    assert all(differing(x[i], x[j]) > 30 for i, j in itertools.combinations(range(3), 2))


def test_load_dataset_splits_images_with_their_factors_and_labels():
    data = load_dataset("sprites", size=300)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 270, "test": 30}
    assert data.image_shape == (1, 64, 64) and data.data_dim == 4096 and data.dynamic == frozenset()
    assert data.factor_names == S.FACTORS
    drawn = S.flat_indices(S.sprites(300, seed=SPLIT_SEED)[1])
    together = torch.cat([S.flat_indices(data.factors_of(s)) for s in ("train", "test")])
    assert torch.equal(together.sort().values, drawn)
    valid = data.with_validation(0.2)
    assert len(valid.factors_of("valid")) == 54
    for d in (data, valid):
        for split, x in d.splits.items():
            assert torch.equal(x, S.render(d.factors_of(split)))  # each image beside its own factors
            assert torch.equal(d.labels_of(split), d.factors_of(split)[:, 0])


def test_sizes_and_factors_belong_to_sprites_only():
    with pytest.raises(DataError, match="--data-size applies to the sprites data set only"):
        load_dataset("mnist-5k", size=10)
    data = Dataset.from_tensors(torch.rand(20, 4))
    with pytest.raises(DataError, match=r"no factors of variation .* sprites"):
        data.factors_of("train")
    with pytest.raises(DataError, match="factors of split 'train' of shape"):
        Dataset.from_tensors(torch.rand(20, 4), torch.rand(5, 4), factors={"train": torch.zeros(20, 2)})


def fake_dsprites(path: Path, flat: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Write a file of dSprites' layout holding the combinations ``flat``, in a shuffled order, each with a
    random binary image; return the images in the order of ``flat``."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 2, size=(len(flat), 64, 64), dtype=np.uint8)
    order = rng.permutation(len(flat))
    classes = np.zeros((len(flat), 6), dtype=np.int64)
    classes[:, 1:] = np.stack(np.unravel_index(flat, S.FACTOR_SIZES), axis=1)
    np.savez_compressed(path, imgs=imgs[order], latents_classes=classes[order], metadata=np.array([0]))
    return imgs


def test_read_dsprites_selects_the_drawn_combinations(tmp_path: Path):
    flat = S.subset_indices(120, seed=SPLIT_SEED).numpy()
    others = np.setdiff1d(np.arange(0, S.PRODUCT_SIZE, 997), flat)[:40]  # rows the draw does not use
    path = tmp_path / S.DSPRITES_FILE
    stored = fake_dsprites(path, np.concatenate([flat, others]))
    x, f = S.read_dsprites(path, 120, seed=SPLIT_SEED)
    assert torch.equal(f, S.sprites(120, seed=SPLIT_SEED)[1])
    assert x.dtype == torch.float32 and torch.equal(x, torch.as_tensor(stored[:120].reshape(120, -1)).float())
    data = load_dataset("sprites", data_dir=tmp_path, size=120)  # read, not drawn: the random images come back
    for split, x in data.splits.items():
        rows = np.searchsorted(flat, S.flat_indices(data.factors_of(split)).numpy())
        assert torch.equal(x, torch.as_tensor(stored[rows].reshape(len(rows), -1)).float())
    with pytest.raises(DataError, match=r"lacks 1 of the 121 factor combinations"):
        S.read_dsprites(path, 121, seed=SPLIT_SEED)


def test_a_data_dir_without_the_file_draws_and_a_missing_one_is_an_error(tmp_path: Path):
    data = load_dataset("sprites", data_dir=tmp_path, size=30)
    assert torch.equal(data.splits["test"], S.render(data.factors_of("test")))
    with pytest.raises(DataError, match="no such directory"):
        load_dataset("sprites", data_dir=tmp_path / "typo", size=30)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((2, 64, 64), np.uint8), "latents_classes": np.zeros((2, 6), int)}, "no array imgs"),
        ({"imgs": np.zeros((2, 64, 64), np.uint8), "latents_classes": np.zeros((2, 5), int)}, r"shape \(2, 5\)"),
        ({"imgs": np.zeros((2, 32, 32), np.uint8), "latents_classes": np.zeros((2, 6), int)}, r"shape \(2, 32, 32\)"),
        ({"imgs": np.zeros((2, 64, 64), np.uint8), "latents_classes": np.full((2, 6), 40)}, "out of range"),
        ({"imgs": np.array([None]), "latents_classes": np.zeros((1, 6), int)}, "cannot read its arrays"),
    ],
)
def test_read_dsprites_refuses_a_malformed_file(tmp_path: Path, arrays: dict, message: str):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as e:
        S.read_dsprites(tmp_path / "bad.npz", 1, seed=0)
    assert str(e.value).startswith(f"{tmp_path / 'bad.npz'}: ")


def test_read_dsprites_refuses_images_that_are_not_binary(tmp_path: Path):
    path = tmp_path / "grey.npz"
    fake_dsprites(path, S.subset_indices(3, seed=0).numpy())
    with np.load(path) as npz:
        np.savez(path, imgs=npz["imgs"] * 255, latents_classes=npz["latents_classes"])
    with pytest.raises(DataError, match=r"imgs of values 0 \.\. 255; dSprites' images are 0 or 1"):
        S.read_dsprites(path, 3, seed=0)


def test_read_dsprites_refuses_a_file_that_is_not_a_npz(tmp_path: Path):
    (tmp_path / "x.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"cannot read it as a \.npz"):
        S.read_dsprites(tmp_path / "x.npz", 1, seed=0)
    np.save(tmp_path / "y.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"one array, not a \.npz"):
        S.read_dsprites(tmp_path / "y.npy", 1, seed=0)
