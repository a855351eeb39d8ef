"""The device-agnostic checks: bounds, training (eager and compiled) and the command line on ``pytest --device``
(cpu by default; ``benchmarks/gpu_check.sh`` runs them with ``--device cuda``)."""

from pathlib import Path

import pyro
import pytest
import torch

import pyrovae
from pyrovae import cli
from pyrovae.data import Dataset
from pyrovae.guides import NormalGuide
from pyrovae.inference import TrainConfig, Trainer, iwae_bound, log_likelihood, log_weights
from pyrovae.models import VAE
from pyrovae.nets import Decoder, GaussianEncoder

from conftest import binary_images
from linear_gaussian import LinearGaussian


def test_every_bound_is_log_px_under_the_exact_posterior(device: torch.device):
    lg = LinearGaussian().to(device)
    x = lg.sample_x(6).to(device)
    exact = lg.log_px(x)
    log_w = log_weights(lg.model, lg.exact_guide, x, num_particles=4)
    assert log_w.device.type == device.type and log_w.shape == (4, 6)
    torch.testing.assert_close(log_w, exact.expand(4, 6))
    torch.testing.assert_close(iwae_bound(lg.model, lg.exact_guide, x, num_particles=7), exact)
    estimate, stderr = log_likelihood(lg.model, lg.exact_guide, x, num_samples=50, chunk_size=16)
    torch.testing.assert_close(estimate, exact)
    assert torch.all(stderr < 1e-6)


def data_on(device: torch.device) -> Dataset:
    x = torch.as_tensor(binary_images(60, dim=16), dtype=torch.float32, device=device)
    return Dataset("tiny", {"train": x[:40], "test": x[40:]}, image_shape=(1, 4, 4))


@pytest.mark.filterwarnings("ignore::pyrovae.inference.diagnostics.PosteriorCollapseWarning")  # one short epoch
@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize(("objective", "k"), [("elbo", 1), ("iwae", 3)])
def test_training_stays_on_the_device(device: torch.device, objective: str, k: int, compile: bool):
    model = VAE(Decoder(3, 16, (8,)), 3).to(device)
    guide = NormalGuide(GaussianEncoder(16, 3, (8,))).to(device)
    config = TrainConfig(batch_size=20, objective=objective, objective_options={"num_particles": k}, compile=compile)
    trainer = Trainer(model, guide, data_on(device), config, progress=False)
    if compile:
        trainer.compiled.backend = None  # the traced graph as it is (inductor's compile: gpu_check.sh's benchmarks)
    row = trainer.train_epoch()
    assert all(p.device.type == device.type for p in trainer.params.values())
    assert row["train_elbo"] < 0 and row["test_elbo"] < 0
    assert trainer.compiled is None or (trainer.compiled.failed is None and trainer.compiled.graphs)


def test_the_command_line_trains_and_evaluates_on_the_device(device: torch.device, amat_dir: Path, tmp_path: Path):
    out = str(tmp_path / "run")
    small = ["--latent-dim", "3", "--hidden", "16", "--batch-size", "40", "--epochs", "1", "--no-progress"]
    assert cli.main(["train", "--out", out, "--dataset", "binarized-mnist", "--data-dir", str(amat_dir),
                     "--device", str(device), *small]) == 0  # fmt: skip
    assert cli.main(["evaluate", out, "--k", "1,50", "--device", str(device)]) == 0
    pyro.clear_param_store()
    run = pyrovae.load(out, device=str(device))
    assert all(p.device.type == device.type for p in run.networks["decoder"].parameters())
