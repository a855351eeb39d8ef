"""pyrovae.load: a trained run as plain Pyro callables, without touching the user's param store."""

from pathlib import Path

import pyro
import torch
from pyro.infer import Predictive

import pyrovae
from pyrovae.checkpoint import CHECKPOINT, load_checkpoint
from pyrovae.inference import iwae_bound

from conftest import train


def test_load_gives_the_trained_networks_and_leaves_the_param_store_alone(trained):
    _, run_dir = trained
    mine = pyro.param("mine", torch.ones(2))
    run = pyrovae.load(run_dir)
    assert dict(pyro.get_param_store().named_parameters()) == {"mine": mine}  # nothing cleared, nothing added
    saved = load_checkpoint(run_dir / CHECKPOINT)["trainer"]["params"]
    assert set(run.networks) == {"prior_z", "decoder", "encoder_z"}
    for name, value in saved.items():
        key, _, param = name.partition("$$$")
        torch.testing.assert_close(run.networks[key].get_parameter(param).detach(), value)
    assert run.spec.latents[0].size == 3 and run.config.train.epochs == 1


def test_a_loaded_run_composes_with_pyro(trained):
    run = pyrovae.load(trained[1])
    x = torch.bernoulli(torch.full((5, 784), 0.2))
    samples = Predictive(run.model, guide=run.guide, num_samples=4, return_sites=["z"])(x)
    assert samples["z"].shape == (4, 5, 3)
    assert iwae_bound(run.model, run.guide, x, num_particles=10).shape == (5,)
    prior = Predictive(run.model, num_samples=2)(None, batch_size=3)
    assert prior["x"].shape == (2, 3, 784)


def test_loading_one_run_after_another_uses_each_ones_weights(trained, tmp_path: Path):
    assert train(trained[0], tmp_path / "other", "--epochs", "1", "--seed", "5") == 0
    first, second = pyrovae.load(trained[1]), pyrovae.load(tmp_path / "other")
    z = torch.zeros(1, 3)
    decoded = [r.networks["decoder"](z).base_dist.logits.detach() for r in (first, second)]
    first.model(None, batch_size=1)  # registers its networks in the store; the second keeps its own weights
    second.model(None, batch_size=1)
    assert not torch.allclose(decoded[0], decoded[1])
    torch.testing.assert_close(second.networks["decoder"](z).base_dist.logits, decoded[1])
