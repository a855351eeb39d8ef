"""The README's examples run as written, in order (with one epoch instead of several)."""

import re
import shlex
from pathlib import Path

import pyro
import pytest
import torch

from pyrovae import cli, spec
from pyrovae.inference import iwae_bound

from conftest import SMALL

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
HAND_WRITTEN = "Laplace"  # the hand-written Pyro model's block, which stands alone


def test_readme_python_example_runs(capsys, trained, tmp_path):
    code = "\n".join(block for block in BLOCKS if HAND_WRITTEN not in block)
    assert "range(20)" in code and 'pyrovae.load("runs/demo")' in code and 'pyrovae.load("runs/cvae")' in code
    cvae_run = tmp_path / "cvae"
    assert cli.main(["train", "--model", "cvae", "--epochs", "1", "--out", str(cvae_run), *SMALL]) == 0
    code = code.replace("range(20)", "range(1)").replace('"runs/demo"', repr(str(trained[1])))  # a trained run
    code = code.replace('"runs/cvae"', repr(str(cvae_run)))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "'elbo'" in printed
    for name in ("NUTS", "amortized guide"):  # the inpainting recipe: a pixel accuracy of the bottom half
        assert 0 <= float(printed.split(f"\n{name} ")[1].split()[0]) <= 1  # (a 1-epoch toy run: no quality asked)
    z = namespace["mcmc"].get_samples()["z"]
    assert z.shape[0] == 100 and (z.std(0) > 0).all()  # a chain that moved in every dimension of z
    shrunk = namespace["mean_codes"] * 32 / 33  # the posterior mean of mu_g given q(z | x): precision 8 / 0.5^2 + 1
    error = (pyro.param("mu_loc") - shrunk).detach().abs().max()
    assert error < 0.1 < 0.2 < shrunk.abs().max()  # learned each group's mean, which mu_loc's start, 0, is not
    assert namespace["recon"].shape == (1, 8, 784) and namespace["decoder"] is not None
    assert not torch.equal(namespace["recon"][0], namespace["x"])  # drawn from p(x | z), not the observed x
    assert namespace["prior"].shape == (4, 2, 784) and not torch.equal(namespace["prior"][0], namespace["prior"][1])
    assert namespace["drawn"]["x"].shape == (1, 8, 784)
    cvae, z, means = namespace["cvae"], namespace["z"], namespace["means"]
    one_hot = torch.nn.functional.one_hot(torch.arange(10), 10).float()
    expected = cvae.model.conditionals["decoder"](z.expand(10, -1), one_hot).mean  # the labels passed, as inputs
    assert torch.allclose(means, expected) and not torch.allclose(means[0], means[1])


def test_readme_hand_written_pyro_model_trains_and_gets_bounds(capsys):
    (code,) = [block for block in BLOCKS if HAND_WRITTEN in block]
    exec(compile(code.replace("range(3)", "range(1)"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'test_elbo'" in out and "L_100 -" in out


BLOCKS_TOML = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
(GMVAE,) = [block for block in BLOCKS_TOML if 'family = "categorical"' in block]
(SBN,) = [block for block in BLOCKS_TOML if 'family = "bernoulli"' in block]
TOML = [block for block in BLOCKS_TOML if block not in (GMVAE, SBN)]


def test_readme_discrete_latent_spec_is_the_builtin_gmvae():
    assert spec.parse(spec.tomllib.loads(GMVAE)) == spec.load("gmvae")


def test_readme_binary_latent_spec_is_the_benchmarks_sigmoid_belief_net():
    benchmark = Path(__file__).parents[1] / "benchmarks" / "specs" / "sbn.toml"
    assert spec.parse(spec.tomllib.loads(SBN)) == spec.load(str(benchmark))


ONE_LATENT = (
    'likelihood = "{likelihood}"\nhidden = [16]\n[[latent]]\nname = "z"\nsize = 4\n{line}\n[x]\ngiven = ["z"]\n'
)


def test_readme_toml_spec_builds():
    text = TOML[0]
    model, guide = spec.build(spec.tomllib.loads(text), data_dim=784)
    assert [n.site for n in guide.nodes] == ["style", "stroke"] and model.observation.parents == ("style", "stroke")
    assert model(torch.rand(2, 784)).shape == (2, 784)


@pytest.mark.parametrize("line", [line.split("#")[0].strip() for line in TOML[1].strip().splitlines()])
def test_readme_family_lines_build_models_that_run(line: str):
    encoder = "" if line.startswith("encoder") else 'encoder = { given = ["x"] }'
    model, guide = spec.build(spec.tomllib.loads(ONE_LATENT.format(likelihood="bernoulli", line=f"{line}\n{encoder}")),
                              data_dim=784)  # fmt: skip
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    assert iwae_bound(model, guide, x, num_particles=4).shape == (3,)


@pytest.mark.parametrize("likelihood", ["poisson", "negative-binomial"])
def test_readme_count_likelihoods_build(likelihood: str):
    text = ONE_LATENT.format(likelihood=likelihood, line='encoder = { given = ["x"] }')
    model, guide = spec.build(spec.tomllib.loads(text), data_dim=784)
    assert iwae_bound(model, guide, torch.poisson(torch.full((3, 784), 2.0)), num_particles=4).shape == (3,)


def test_readme_joint_model_of_image_and_label_builds():
    text = ONE_LATENT.format(likelihood="bernoulli", line='encoder = { given = ["x"] }') + TOML[2]
    model, guide = spec.build(spec.tomllib.loads(text), data_dim=784)
    x, y = torch.bernoulli(torch.full((3, 784), 0.3)), torch.tensor([1, 2, 9])
    assert model.observed == {"y": 10} and iwae_bound(model, guide, x, y, num_particles=4).shape == (3,)


def test_readme_model_file_route_runs_as_written(tmp_path: Path, monkeypatch, capsys):
    (file,) = re.findall(r"```py\n(# my_vae.py.*?)```", README, flags=re.S)
    (commands,) = [b for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S) if "runs/mine" in b]
    (tmp_path / "my_vae.py").write_text(file)
    monkeypatch.chdir(tmp_path)
    for line in commands.strip().splitlines():
        argv = shlex.split(line.replace("--epochs 20", "--epochs 1").replace("1,50,5000", "1,5"))
        assert argv[0] == "pyrovae" and cli.main([*argv[1:], *(["--no-progress"] if argv[1] == "train" else [])]) == 0
    assert {"samples.png", "latent-map.png", "bounds.csv"} <= {p.name for p in (tmp_path / "runs/mine").iterdir()}
