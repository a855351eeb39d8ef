from pathlib import Path

import pyro
import pytest
import torch

from pyrovae import spec
from pyrovae.guides import NormalGuide
from pyrovae.inference import make_objective
from pyrovae.models import VAE
from pyrovae.nets import Decoder, GaussianEncoder

SPECS = sorted((Path(spec.__file__).parents[1] / "models" / "specs").glob("*.toml"))

VAE_SPEC = """
likelihood = "bernoulli"
[[latent]]
name = "z"
size = 3
encoder = { given = ["x"], hidden = [8, 6] }
[x]
given = ["z"]
hidden = [6, 8]
"""


def test_the_shipped_specs_are_the_builtin_families():
    assert sorted(p.stem for p in SPECS) == sorted(spec.BUILTIN)
    assert all(spec.builtin_path(name).is_file() for name in spec.BUILTIN)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_builds_and_trains_one_step(path: Path):
    model, guide = spec.build(spec.with_options(spec.load(path), hidden=(16,)), data_dim=20)
    args = (torch.bernoulli(torch.full((4, 20), 0.3)), *([torch.arange(4)] if model.inputs else []))
    optimizer = pyro.optim.Adam({"lr": 1e-2})
    loss = pyro.infer.SVI(model, guide, optimizer, make_objective("elbo")).step(*args, num_data=100)
    assert torch.isfinite(torch.tensor(loss))


def builtin_vae() -> tuple[VAE, NormalGuide]:
    """The hand-built VAE, encoder first as pyrovae has always built it."""
    guide = NormalGuide(GaussianEncoder(12, 3, (8, 6)))
    return VAE(Decoder(3, 12, (6, 8)), 3), guide


@pytest.mark.parametrize("objective", ["elbo", "mf-elbo"])
def test_a_spec_equal_to_the_builtin_vae_gives_the_same_loss(objective: str):
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    losses = []
    for make in (
        lambda: spec.build(spec.parse(spec.tomllib.loads(VAE_SPEC)), data_dim=12),
        builtin_vae,
    ):
        pyro.clear_param_store()
        torch.manual_seed(0)  # the same initial weights ...
        model, guide = make()
        torch.manual_seed(1)  # ... and the same draw of z
        losses.append(make_objective(objective, num_particles=3).differentiable_loss(model, guide, x, beta=0.7).item())
    assert losses[0] == losses[1]


def spec_error(text: str) -> str:
    with pytest.raises(spec.SpecError) as e:
        spec.parse(spec.tomllib.loads(text))
    return str(e.value)


def test_unknown_likelihood_names_the_field_and_the_choices():
    assert spec_error(VAE_SPEC.replace('"bernoulli"', '"poisson"')).startswith("spec: likelihood: unknown 'poisson'")


def test_missing_size_names_the_latent():
    assert spec_error(VAE_SPEC.replace("size = 3", "")).startswith("spec: latent[0].size: missing")


CHAIN = """
likelihood = "bernoulli"
[[latent]]
name = "a"
size = 2
encoder = { given = ["x", "b"] }
[[latent]]
name = "b"
size = 2
given = ["a"]
encoder = { given = ["a"] }
[x]
given = ["b"]
"""


def test_a_cycle_names_the_field_and_the_latents():
    assert spec_error(CHAIN) == "spec: latent[*].encoder.given: the latents ['a', 'b'] form a cycle"
    prior_cycle = CHAIN.replace('given = ["x", "b"]', 'given = ["x"]').replace(
        "size = 2\nencoder", 'size = 2\ngiven = ["b"]\nencoder', 1
    )
    assert spec_error(prior_cycle) == "spec: latent[*].prior.given: the latents ['a', 'b'] form a cycle"


def test_other_mistakes_name_their_field():
    assert spec_error(VAE_SPEC.replace('given = ["z"]', 'given = ["w"]')).startswith("spec: x.given")
    unknown_parent = spec_error(VAE_SPEC.replace('given = ["x"]', 'given = ["q"]'))
    assert unknown_parent.startswith("spec: latent[0].encoder.given: unknown 'q'")
    assert spec_error(VAE_SPEC.replace("[[latent]]", 'guide = "flow"\n[[latent]]', 1)).startswith(
        "spec: guide: unknown"
    )
    assert spec_error(VAE_SPEC.replace("size = 3", "size = 3\nsise = 4")).startswith("spec: latent[0]: unknown keys")
    assert spec_error('activation = "gelu"\n' + VAE_SPEC).startswith("spec: activation: unknown 'gelu'")
    assert spec_error("obs_scale = -1\n" + VAE_SPEC).startswith("spec: obs_scale: expected a positive number")
    with pytest.raises(spec.SpecError, match="--latent-dim: give 2 sizes"):
        spec.with_options(spec.load("hvae"), latent_dim=(10,))
    with pytest.raises(spec.SpecError, match=r"x\.size: missing"):
        spec.build(spec.parse(spec.tomllib.loads(VAE_SPEC)))
