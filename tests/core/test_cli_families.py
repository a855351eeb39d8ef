"""New families from a spec, one line each: they train with every objective their capabilities allow,
are refused the others in one line, and their bounds rise with k."""

from pathlib import Path

import pandas as pd
import pyro
import pytest
import torch

from pyrovae import cli, spec, store
from pyrovae.checkpoint import CHECKPOINT, load_checkpoint

from conftest import SMALL, train

SPEC = """likelihood = "{likelihood}"
hidden = [16]
[[latent]]
name = "z"
size = 3
prior = {prior}
encoder = {{ given = ["x"]{encoder} }}
[x]
given = ["z"]
"""
FAMILIES = {  # id -> (prior, encoder extras, likelihood)
    "laplace-prior": ('"laplace"', "", "bernoulli"),
    "student-t-prior": ('{ family = "student-t", df = 4 }', "", "bernoulli"),
    "learned-normal-prior": ('{ family = "normal", learn = true, scale = 0.5 }', "", "bernoulli"),
    "vamp-prior": ('{ family = "vamp", components = 8 }', "", "bernoulli"),
    "mixture-prior": ('{ family = "mixture", components = 4 }', "", "bernoulli"),
    "iaf-guide": ('"normal"', ', family = "iaf", flows = 2', "bernoulli"),
    "poisson": ('"normal"', "", "poisson"),
    "negative-binomial": ('"normal"', "", "negative-binomial"),
    "zero-inflated-poisson": ('"normal"', "", "zero-inflated-poisson"),
}


def write_spec(tmp_path: Path, name: str) -> Path:
    prior, encoder, likelihood = FAMILIES[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(prior=prior, encoder=encoder, likelihood=likelihood))
    return path


@pytest.mark.parametrize("objective", [["--objective", "elbo"], ["--objective", "iwae", "--particles", "3"]])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_new_family_trains_and_its_bounds_rise_with_k(amat_dir: Path, tmp_path: Path, name: str, objective):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--spec", str(write_spec(tmp_path, name)), "--epochs", "2", *objective) == 0
    assert cli.main(["evaluate", str(out), "--k", "1,50"]) == 0
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")["bound"]
    assert bounds[50] > bounds[1]  # L_50 >= L_1 in expectation; far above it for a model this rough
    assert cli.main(["sample", str(out), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0


@pytest.mark.parametrize("name", ["laplace-prior", "student-t-prior", "vamp-prior", "mixture-prior", "iaf-guide"])
def test_mf_elbo_is_refused_where_no_kl_is_in_closed_form(amat_dir: Path, tmp_path: Path, capsys, name: str):
    assert train(amat_dir, tmp_path / "run", "--spec", str(write_spec(tmp_path, name)), "--objective", "mf-elbo") == 2
    err = capsys.readouterr().err
    assert "--objective mf-elbo takes each latent's KL(q || p) in closed form, and latent 'z' has none" in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_learned_prior_is_learned_and_reloads(amat_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--spec", str(write_spec(tmp_path, "learned-normal-prior")), "--epochs", "2") == 0
    params = load_checkpoint(out / CHECKPOINT)["trainer"]["modules"]["model"]  # the model's state_dict
    scale = torch.nn.functional.softplus(params["conditionals.prior_z.scale"]) + 1e-4
    assert not torch.allclose(scale, torch.full((3,), 0.5))  # it moved from where the spec started it
    run = store.load_run(out, "cpu")
    torch.testing.assert_close(run.model.conditionals["prior_z"]().base_dist.scale, scale)


def test_count_likelihoods_binarize_grey_images_and_refuse_other_non_counts(tmp_path: Path):
    path = write_spec(tmp_path, "poisson")  # mnist-5k is grey-scale: binarized for a count likelihood
    assert cli.main(["train", "--spec", str(path), "--out", str(tmp_path / "run"), *SMALL, "--epochs", "1"]) == 0
    model, _ = spec.build(path, data_dim=784)
    with pytest.raises(ValueError, match="the poisson likelihood needs counts"):
        model(torch.full((2, 784), 0.5))


JOINT = """likelihood = "bernoulli"
hidden = [16]
[[latent]]
name = "z"
size = 3
encoder = { given = ["x"] }
[x]
given = ["z"]
[[observed]]
name = "y"
classes = 10
given = ["z"]
"""


@pytest.mark.parametrize("objective", [["--objective", "elbo"], ["--objective", "iwae", "--particles", "3"]])
def test_a_joint_model_of_image_and_label_trains_and_bounds_log_p_x_y(mnist_dir: Path, tmp_path: Path, objective):
    path, out = tmp_path / "joint.toml", tmp_path / "run"
    path.write_text(JOINT)
    data = ["--dataset", "mnist", "--data-dir", str(mnist_dir)]  # labelled
    assert cli.main(["train", "--spec", str(path), "--out", str(out), *data, *SMALL, "--epochs", "2", *objective]) == 0
    assert cli.main(["evaluate", str(out), "--k", "1,50"]) == 0
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")["bound"]
    assert bounds[50] > bounds[1]
    run = store.load_run(out, "cpu")
    x, y = torch.bernoulli(torch.full((4, 784), 0.2)), torch.tensor([0, 3, 3, 9])
    trace = pyro.poutine.trace(run.model).get_trace(x, y)
    assert trace.nodes["y"]["is_observed"] and torch.equal(trace.nodes["y"]["value"], y)
    generated = pyro.poutine.trace(run.model).get_trace(None, batch_size=5)  # y is generated with x
    assert not generated.nodes["y"]["is_observed"] and generated.nodes["y"]["value"].shape == (5,)
    assert cli.main(["sample", str(out), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["plot", str(out), "--kind", "latent-map", "--out", str(tmp_path / "m.png")]) == 0


def test_a_joint_model_needs_labelled_data(amat_dir: Path, tmp_path: Path, capsys):
    (tmp_path / "joint.toml").write_text(JOINT)
    assert train(amat_dir, tmp_path / "run", "--spec", str(tmp_path / "joint.toml")) == 2
    assert "binarized-mnist has none" in capsys.readouterr().err


@pytest.mark.parametrize("prior", ['"vamp"', '"mixture"'])
def test_a_parentless_family_cannot_be_a_conditional_prior(prior: str):
    text = SPEC.format(prior=prior, encoder="", likelihood="bernoulli").replace(
        "size = 3\n", 'size = 3\ngiven = ["w"]\n'
    )
    text += '[[latent]]\nname = "w"\nsize = 2\nencoder = { given = ["x"] }\n'
    with pytest.raises(spec.SpecError, match="prior has no parents; drop the latent's given"):
        spec.parse(spec.tomllib.loads(text))
