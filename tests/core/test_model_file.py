"""``--model-file FILE.py:FACTORY``: a hand-written Pyro model gets a run directory, evaluate, sample, plot and load."""

import json
from pathlib import Path

import pandas as pd
import pyro
import pytest
import torch

import pyrovae
from pyrovae import cli
from pyrovae.checkpoint import CHECKPOINT, load_checkpoint

from conftest import SMALL, one_error_line

# Pyro's examples/vae/vae.py, cut down: an nn.Module with model and guide methods, knowing nothing of pyrovae.
MODULE_VAE = """
import pathlib, os
import pyro, pyro.distributions as dist, torch
from torch import nn

pathlib.Path(os.environ["PYROVAE_TEST_MARKER"]).touch()  # shows that the file was imported


class VAE(nn.Module):
    def __init__(self, data_dim, z_dim=2, hidden=16):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(nn.Linear(data_dim, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, data_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x).chunk(2, -1)
            pyro.sample("latent", dist.Normal(loc, nn.functional.softplus(scale) + 1e-3).to_event(1))


def make_vae(data_dim):
    return VAE(data_dim)
"""

# Plain functions whose only parameters are pyro.params: they live in the param store.
FUNCTIONS = """
import pyro, pyro.distributions as dist, torch
from torch.distributions import constraints


def make(data_dim):
    def model(x):
        w = pyro.param("w", torch.zeros(2, data_dim))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z @ w).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(data_dim, 2))
        scale = pyro.param("scale", torch.ones(2), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((x - 0.5) @ loc, scale).to_event(1))

    return model, guide
"""


@pytest.fixture
def marker(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "imported"
    monkeypatch.setenv("PYROVAE_TEST_MARKER", str(path))
    return path


def write(tmp_path: Path, text: str, name: str = "my_vae.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def train(amat_dir: Path, out: Path, *extra: str) -> int:
    args = ["train", "--dataset", "binarized-mnist", "--data-dir", str(amat_dir), "--out", str(out)]
    return cli.main([*args, *SMALL[4:], *extra])  # batch size and no progress bar; the file sets its own sizes


def test_a_module_with_model_and_guide_methods_gets_a_whole_run(amat_dir: Path, tmp_path: Path, marker: Path):
    ref = f"{write(tmp_path, MODULE_VAE)}:make_vae"
    out = tmp_path / "run"
    assert train(amat_dir, out, "--model-file", ref, "--epochs", "2", "--objective", "iwae", "--particles", "3") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "file" and config["model_file"] == ref and config["spec"] is None
    modules = load_checkpoint(out / CHECKPOINT)["trainer"]["modules"]
    assert "owner.decoder.0.weight" in modules["model"]  # state dicts, not param-store names
    assert cli.main(["evaluate", str(out), "--k", "1,50", "--model-file", ref]) == 0
    bounds = pd.read_csv(out / "bounds.csv").set_index("k")["bound"]
    assert bounds[50] > bounds[1]
    for argv in (["sample", str(out)], *(["plot", str(out), "--kind", k] for k in ("samples", "latent-map", "curves"))):
        assert cli.main([*argv, "--model-file", ref]) == 0
    assert {"samples.png", "reconstructions.png", "latent-map.png", "curves.png"} <= {p.name for p in out.iterdir()}
    assert train(amat_dir, out, "--model-file", ref, "--resume", "--epochs", "3") == 0
    assert len(pd.read_csv(out / "metrics.csv")) == 3


def test_load_puts_the_weights_in_the_module_and_leaves_the_param_store(amat_dir: Path, tmp_path: Path, marker):
    ref = f"{write(tmp_path, MODULE_VAE)}:make_vae"
    out = tmp_path / "run"
    assert train(amat_dir, out, "--model-file", ref, "--epochs", "1") == 0
    pyro.clear_param_store()
    pyro.param("mine", torch.ones(3))
    run = pyrovae.load(out, model_file=ref)
    assert list(pyro.get_param_store().keys()) == ["mine"]
    saved = load_checkpoint(out / CHECKPOINT)["trainer"]["modules"]["model"]["owner.decoder.0.weight"]
    torch.testing.assert_close(run.networks["decoder"][0].weight, saved)
    x = torch.zeros(4, run.model.data_dim)
    trace = pyro.poutine.trace(pyro.poutine.replay(run.model, pyro.poutine.trace(run.guide).get_trace(x))).get_trace(x)
    assert trace.nodes["obs"]["fn"].batch_shape == (4,)  # plain Pyro callables


def test_plain_functions_keep_their_params_by_name(amat_dir: Path, tmp_path: Path):
    ref = f"{write(tmp_path, FUNCTIONS)}:make"
    out = tmp_path / "run"
    assert train(amat_dir, out, "--model-file", ref, "--epochs", "1") == 0
    params = load_checkpoint(out / CHECKPOINT)["trainer"]["params"]
    assert set(params) == {"w", "loc", "scale"}
    pyro.clear_param_store()
    pyrovae.load(out, model_file=ref)
    torch.testing.assert_close(pyro.param("w").detach(), params["w"])
    assert cli.main(["evaluate", str(out), "--k", "1,5", "--model-file", ref]) == 0


def test_a_run_never_imports_the_file_it_names(amat_dir: Path, tmp_path: Path, marker: Path, capsys):
    path = write(tmp_path, MODULE_VAE)
    out = tmp_path / "run"
    assert train(amat_dir, out, "--model-file", f"{path}:make_vae", "--epochs", "1") == 0
    marker.unlink()
    for argv in (["evaluate", str(out)], ["sample", str(out)], ["plot", str(out), "--kind", "samples"]):
        err = one_error_line(capsys, 2, cli.main(argv))
        assert "pyrovae runs no code that a run directory names, so give it yourself: --model-file" in err
    assert one_error_line(capsys, 2, train(amat_dir, out, "--resume", "--epochs", "2"))
    with pytest.raises(pyrovae.model_file.ModelFileError, match="give it yourself"):
        pyrovae.load(out)
    assert not marker.exists()
    path.write_text(MODULE_VAE.replace("hidden=16", "hidden=17"))  # another model under the same name
    err = one_error_line(capsys, 2, cli.main(["evaluate", str(out), "--model-file", f"{path}:make_vae"]))
    assert f"{path} is not the file {out} was trained from (its contents differ" in err
    assert not marker.exists() and not (out / "bounds.csv").exists()


@pytest.mark.parametrize(
    ("text", "ref", "message"),
    [
        (MODULE_VAE, "{path}", "expected FILE.py:FACTORY, e.g. my_vae.py:make_vae"),
        (MODULE_VAE, "{path}.missing:make_vae", "no such file"),
        (MODULE_VAE, "{path}:make_cat", "no callable 'make_cat' there (it has ['VAE', 'make_vae'"),
        ("raise ImportError('no such library')", "{path}:make", "importing it failed: ImportError: no such library"),
        ("def make():\n    return 5\n", "{path}:make", "returned int; a factory returns (model, guide) or an object"),
    ],
)
def test_bad_model_files_are_one_line(amat_dir: Path, tmp_path: Path, marker, capsys, text, ref, message):
    path = write(tmp_path, text)
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "run", "--model-file", ref.format(path=path)))
    assert message in err and not (tmp_path / "run" / CHECKPOINT).exists()


def test_model_options_and_model_files_do_not_mix(amat_dir: Path, tmp_path: Path, marker, capsys):
    ref = f"{write(tmp_path, MODULE_VAE)}:make_vae"
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "a", "--model-file", ref, "--latent-dim", "2"))
    assert "--latent-dim: the model options apply to spec models" in err
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "b", "--model-file", ref, "--model", "cvae"))
    assert "give one of --model, --spec and --model-file, not model and model_file" in err
    err = one_error_line(capsys, 2, train(amat_dir, tmp_path / "c", "--no-binarize"))
    assert "--no-binarize applies to --model-file runs" in err
    assert not any((tmp_path / name).exists() for name in "abc")
