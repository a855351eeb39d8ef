import json
import math
import warnings
from pathlib import Path

import pyro
import pytest
import torch

from pyrovae import spec
from pyrovae.guides import NormalGuide
from pyrovae.inference import make_objective
from pyrovae.inference.log_weights import enumerated_sites
from pyrovae.models import VAE
from pyrovae.nets import Decoder, GaussianEncoder

SPECS = sorted((Path(spec.__file__).parents[2] / "models" / "specs").glob("*.toml"))

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
    objective = make_objective("elbo", enumerated=bool(enumerated_sites(model, guide, *args)))  # gmvae: y summed
    loss = pyro.infer.SVI(model, guide, optimizer, objective).step(*args, num_data=100)
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
    assert spec_error(VAE_SPEC.replace('"bernoulli"', '"zipf"')).startswith("spec: likelihood: unknown 'zipf'")


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


def test_an_encoder_that_reads_nothing_names_the_field():
    message = spec_error(VAE_SPEC.replace('given = ["x"], hidden = [8, 6]', "given = []"))
    assert message.startswith(
        'spec: latent[0].encoder.given: empty; q(z | ...) must read something, e.g. given = ["x"]'
    )


def test_an_encoder_that_reads_nothing_is_a_clear_cli_error(amat_dir: Path, tmp_path: Path, capsys):
    from conftest import train

    path = tmp_path / "bad.toml"
    path.write_text(VAE_SPEC.replace('given = ["x"], hidden = [8, 6]', "given = []"))
    assert train(amat_dir, tmp_path / "run", "--spec", str(path), "--epochs", "1") == 2
    err = capsys.readouterr().err
    assert "spec: latent[0].encoder.given: empty" in err and "Traceback" not in err


DELTA_SPEC = VAE_SPEC.replace('likelihood = "bernoulli"', 'likelihood = "bernoulli"\nguide = "delta"')

# (what is wrong, the spec, how its one-line error starts): a wrong type or value of every field
WRONG_FIELDS = [
    ("corruption-int", "corruption = 3\n" + DELTA_SPEC, "spec: corruption: expected a string"),
    ("corruption-value", 'corruption = "mask:2"\n' + DELTA_SPEC, "spec: corruption: bad corruption 'mask:2'"),
    ("corruption-inf", 'corruption = "gaussian:inf"\n' + DELTA_SPEC, "spec: corruption: bad corruption"),
    ("hidden-string", 'hidden = "abc"\n' + VAE_SPEC, "spec: hidden: expected hidden widths"),
    ("hidden-bool", "hidden = [8, true]\n" + VAE_SPEC, "spec: hidden: expected hidden widths"),
    ("encoder-hidden", VAE_SPEC.replace("[8, 6]", '"8"'), "spec: latent[0].encoder.hidden: expected hidden widths"),
    ("x-hidden", VAE_SPEC.replace("[6, 8]", "[0]"), "spec: x.hidden: expected hidden widths"),
    ("size-negative", VAE_SPEC.replace("size = 3", "size = -1"), "spec: latent[0].size: missing or invalid (-1)"),
    ("size-string", VAE_SPEC.replace("size = 3", 'size = "3"'), "spec: latent[0].size: missing or invalid ('3')"),
    ("size-bool", VAE_SPEC.replace("size = 3", "size = true"), "spec: latent[0].size: missing or invalid"),
    ("likelihood-int", VAE_SPEC.replace('"bernoulli"', "3"), "spec: likelihood: unknown 3"),
    ("guide-list", 'guide = ["diag"]\n' + VAE_SPEC, "spec: guide: unknown ['diag']"),
    ("arch-int", "arch = 1\n" + VAE_SPEC, "spec: arch: unknown 1"),
    ("activation-bool", "activation = false\n" + VAE_SPEC, "spec: activation: unknown False"),
    ("x-given-string", VAE_SPEC.replace('given = ["z"]', 'given = "z"'), "spec: x.given: expected a list of names"),
    ("encoder-given-string", VAE_SPEC.replace('given = ["x"]', 'given = "x"'), "spec: latent[0].encoder.given"),
    ("prior-given-string", VAE_SPEC.replace("size = 3", 'size = 3\ngiven = "x"'), "spec: latent[0].given: expected"),
    ("given-twice", VAE_SPEC.replace('given = ["x"]', 'given = ["x", "x"]'), "spec: latent[0].encoder.given: ['x',"),
    ("encoder-string", VAE_SPEC.replace('{ given = ["x"], hidden = [8, 6] }', '"x"'), "spec: latent[0].encoder:"),
    ("prior-int", VAE_SPEC.replace("size = 3", "size = 3\nprior = 3"), "spec: latent[0].prior: unknown 3"),
    ("obs-scale-string", 'obs_scale = "a"\n' + VAE_SPEC, "spec: obs_scale: expected a positive number, got 'a'"),
    ("obs-scale-nan", "obs_scale = nan\n" + VAE_SPEC, "spec: obs_scale: expected a positive number, got nan"),
    ("min-obs-scale-inf", "min_obs_scale = inf\n" + VAE_SPEC, "spec: min_obs_scale: expected a positive number"),
    ("unknown-top-key", "latent_dim = 3\n" + VAE_SPEC, "spec: unknown keys ['latent_dim']; allowed:"),
    ("description-int", "description = 3\n" + VAE_SPEC, "spec: description: expected a string, got 3"),
    ("inputs-int", "inputs = 3\n" + VAE_SPEC, "spec: inputs: expected name = number of classes"),
    ("inputs-bool", "inputs = { y = true }\n" + VAE_SPEC, "spec: inputs: expected name = number of classes"),
    ("inputs-name", "inputs = { x = 10 }\n" + VAE_SPEC, "spec: inputs: invalid names ['x']"),
    ("latent-name", VAE_SPEC.replace('name = "z"', 'name = "data"'), "spec: latent[0].name: missing or invalid"),
    ("latent-not-array", 'likelihood = "bernoulli"\nlatent = 3\n[x]\ngiven = ["z"]', "spec: latent: expected an array"),
    ("latent-entry", 'likelihood = "bernoulli"\nlatent = [3]\n[x]\ngiven = ["z"]', "spec: latent[0]: expected a table"),
    ("x-not-table", "x = 3\n" + VAE_SPEC.split("[x]")[0], "spec: x: expected a table"),
    ("x-size-bool", VAE_SPEC.replace("[x]", "[x]\nsize = true"), "spec: x.size: expected a positive integer"),
    ("x-size-negative", VAE_SPEC.replace("[x]", "[x]\nsize = -1"), "spec: x.size: expected a positive integer"),
]


@pytest.mark.parametrize(("text", "start"), [case[1:] for case in WRONG_FIELDS], ids=[c[0] for c in WRONG_FIELDS])
def test_a_wrong_field_is_one_line_naming_it(text: str, start: str):
    message = spec_error(text)
    assert message.startswith(start) and "\n" not in message


def test_the_python_api_checks_the_corruption_too():
    with pytest.raises(spec.SpecError, match="spec: corruption: expected a string"):
        spec.with_options(spec.load("dae"), corruption=3)


# A hierarchical prior p(z2) p(z1 | z2) with a mean-field guide q(z1 | x) q(z2 | x), z1 first in the file
HIERARCHICAL_PRIOR = """
likelihood = "bernoulli"
hidden = [6]
[[latent]]
name = "z1"
size = 3
given = ["z2"]
encoder = { given = ["x"] }
[[latent]]
name = "z2"
size = 2
encoder = { given = ["x"] }
[x]
given = ["z1"]
"""


def test_a_mean_field_guide_samples_in_the_models_order_and_trains_with_mf_elbo():
    s = spec.parse(spec.tomllib.loads(HIERARCHICAL_PRIOR))
    assert s.mean_field
    model, guide = spec.build(s, data_dim=12)
    assert [n.site for n in guide.nodes] == [n.site for n in model.latents] == ["z2", "z1"]
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), make_objective("mf-elbo"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pyro: "Failed to verify mean field restriction on the guide"
        loss = svi.step(x, num_data=100)
    assert math.isfinite(loss)


def test_the_guide_order_follows_the_model_where_its_dependencies_allow():
    latent = '[[latent]]\nname = "{}"\nsize = 2\ngiven = {}\nencoder = {{ given = {} }}\n'
    text = 'likelihood = "bernoulli"\n' + "".join(
        latent.format(name, prior, encoder)
        for name, prior, encoder in [
            ("a", '["c"]', '["x", "b"]'),  # q(a | x, b): after b whatever the model does
            ("b", '["a"]', '["x"]'),
            ("c", "[]", '["x"]'),
        ]
    )
    model, guide = spec.build(spec.parse(spec.tomllib.loads(text + '[x]\ngiven = ["b"]\n')), data_dim=4)
    assert [n.site for n in model.latents] == ["c", "a", "b"]
    assert [n.site for n in guide.nodes] == ["c", "b", "a"]


def test_a_spec_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "Kingma & Welling, Universit\xe4t"\n'.encode("latin-1") + VAE_SPEC.encode())
    with pytest.raises(spec.SpecError) as e:
        spec.read(path)
    assert str(e.value).startswith(f"{path}: not UTF-8 text") and "\n" not in str(e.value)


def test_two_label_inputs_are_refused_naming_them():
    text = "inputs = { y = 10, c = 3 }\n" + VAE_SPEC.replace('given = ["z"]', 'given = ["z", "y", "c"]')
    assert spec_error(text) == "spec: inputs: ['y', 'c']: at most one label input is supported (for now); keep one"


@pytest.mark.parametrize("data_dim", [-5, 0, 2.5, True])
def test_build_refuses_a_data_dim_that_is_not_a_positive_int(data_dim):
    with pytest.raises(spec.SpecError, match=rf"^data_dim: expected a positive integer, got {data_dim!r}$"):
        spec.build(spec.parse(spec.tomllib.loads(VAE_SPEC)), data_dim=data_dim)


@pytest.mark.parametrize("image_shape", [(1, 4, 4), (1, -3, -4), (1, 3, 4.0)])
def test_build_refuses_an_image_shape_that_does_not_fit_data_dim(image_shape):
    with pytest.raises(spec.SpecError, match=r"^image_shape: .* 12"):
        spec.build(spec.parse(spec.tomllib.loads(VAE_SPEC)), data_dim=12, image_shape=image_shape)


CVAE_SPEC = "inputs = { y = 5 }\n" + VAE_SPEC.replace('given = ["z"]', 'given = ["z", "y"]')


def test_check_label_classes_names_the_classes_the_data_need():
    with pytest.raises(spec.SpecError) as e:
        spec.check_label_classes(spec.parse(spec.tomllib.loads(CVAE_SPEC)), torch.arange(10), "mnist-5k")
    assert str(e.value) == "spec: inputs.y = 5 classes, but data set 'mnist-5k' has labels 0..9; give y = 10"


def test_check_label_classes_needs_labels_for_a_label_input():
    with pytest.raises(spec.SpecError, match=r"^spec: inputs\.y = 5 classes, but data set 'tiny' has no labels"):
        spec.check_label_classes(spec.parse(spec.tomllib.loads(CVAE_SPEC)), None, "tiny")


def test_check_label_classes_accepts_labels_within_the_classes():
    spec.check_label_classes(spec.parse(spec.tomllib.loads(CVAE_SPEC)), torch.tensor([0, 4, 2]), "mnist-5k")
    spec.check_label_classes(spec.parse(spec.tomllib.loads(VAE_SPEC)), None, "binarized-mnist")


RICH = """likelihood = "learned-gaussian"
min_obs_scale = 0.05
hidden = [16]
activation = "tanh"
[inputs]
c = 3
[[latent]]
name = "top"
size = 2
prior = { family = "student-t", df = 4, scale = 2.0 }
encoder = { given = ["x", "c"], family = "iaf", flows = 2 }
[[latent]]
name = "z"
size = 3
given = ["top", "c"]
hidden = [8, 8]
encoder = { given = ["x", "top"], family = "laplace" }
[x]
given = ["z", "top"]
size = 12
"""


@pytest.mark.parametrize("source", [*spec.BUILTIN, "rich"])
def test_a_resolved_spec_written_out_as_a_table_reads_back_the_same(source: str):
    model = spec.parse(spec.tomllib.loads(RICH)) if source == "rich" else spec.load(source)
    model = spec.with_options(model, hidden=(7, 5))  # the command line's options, resolved
    table = json.loads(json.dumps(spec.to_table(model)))  # as config.json holds it
    assert spec.parse(table) == model
    assert spec.to_table(spec.parse(table)) == table
