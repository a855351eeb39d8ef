"""Shared fixtures: a clean param store, seeded RNGs and Pyro validation for every test."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

from pyrovae import cli
from pyrovae.data import Dataset
from pyrovae.guides import NormalGuide
from pyrovae.models import VAE
from pyrovae.nets import Decoder, GaussianEncoder


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default="cpu",
        help="the device of the device-agnostic tests (those taking the device fixture): cpu, cuda or cuda:N",
    )


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device given by ``pytest --device`` (cpu by default); CUDA asked for where there is none fails."""
    device = torch.device(request.config.getoption("--device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.fail("pytest --device cuda: CUDA is not available here")
    return device


@pytest.fixture(autouse=True)
def clean_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


def binary(n: int, dim: int = 12) -> torch.Tensor:
    """``(n, dim)`` Bernoulli(0.3) pixels, the same for the same sizes: a batch for an objective's value."""
    return torch.bernoulli(torch.full((n, dim), 0.3), generator=torch.Generator().manual_seed(0))


def binary_images(n: int, dim: int = 784, seed: int = 0) -> np.ndarray:
    """Binary rows with structure an autoencoder can learn: noisy copies of 4 prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((4, dim)) < 0.3
    rows = prototypes[rng.integers(0, 4, n)]
    flips = rng.random((n, dim)) < 0.05
    return (rows ^ flips).astype(np.uint8)


def write_amat(path: Path, rows: np.ndarray) -> None:
    text = "".join(" ".join(map(str, row)) + "\n" for row in rows)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as f:
        f.write(text)


@pytest.fixture
def amat_dir(tmp_path: Path) -> Path:
    """A small binarized-MNIST directory (120 / 40 / 40 rows) in the real .amat.gz format."""
    d = tmp_path / "binarized_mnist"
    d.mkdir()
    for i, (split, n) in enumerate((("train", 120), ("valid", 40), ("test", 40))):
        write_amat(d / f"binarized_mnist_{split}.amat.gz", binary_images(n, seed=i))
    return d


@pytest.fixture
def small_data() -> Dataset:
    """A tiny binary data set of 16-pixel images, resident on the CPU."""
    x = torch.as_tensor(binary_images(80, dim=16), dtype=torch.float32)
    return Dataset("tiny", {"train": x[:60], "test": x[60:]}, image_shape=(1, 4, 4))


def make_vae(data_dim: int = 12, latent_dim: int = 3, hidden: tuple[int, ...] = (8,)) -> tuple[VAE, NormalGuide]:
    """A small VAE model and guide."""
    return (
        VAE(Decoder(latent_dim, data_dim, hidden), latent_dim),
        NormalGuide(GaussianEncoder(data_dim, latent_dim, hidden)),
    )


SMALL = ["--hidden", "32", "--latent-dim", "3", "--batch-size", "40", "--no-progress"]  # CLI runs in tests


def options(name: str, particles: int, gradient: str = "standard") -> dict:
    """``TrainConfig.objective_options`` of objective ``name``: ``particles`` and, for iwae, ``gradient``."""
    return {"num_particles": particles, **({"gradient": gradient} if name == "iwae" else {})}


def train(amat_dir: Path, out: Path, *extra: str) -> int:
    """``pyrovae train`` of a small VAE on a binarized-MNIST directory, in this process."""
    args = ["train", "--dataset", "binarized-mnist", "--data-dir", str(amat_dir), "--out", str(out)]
    return cli.main([*args, *SMALL, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A small binarized-MNIST directory (80 / 40 / 40 rows, plain .amat) and a 1-epoch run trained on it,
    shared by a test module: copy the run before changing it."""
    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    data.mkdir()
    for i, (split, n) in enumerate((("train", 80), ("valid", 40), ("test", 40))):
        write_amat(data / f"binarized_mnist_{split}.amat", binary_images(n, seed=i))
    assert train(data, root / "run", "--epochs", "1") == 0
    return data, root / "run"


def one_error_line(capsys, status: int, returned: int) -> str:
    """The one line that a command which returned ``returned`` wrote to stderr, checked to be an error of ``status``."""
    err = capsys.readouterr().err
    assert returned == status, err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file (the MNIST format): magic 0x08 0x0N, big-endian sizes, unsigned bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A labelled ``--dataset mnist`` directory of 80 training and 40 test digits (noise, labels 0..9)."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 80), ("t10k", 40)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return tmp_path / "mnist"
