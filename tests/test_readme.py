"""The README's examples run as written, in order (with one epoch instead of several)."""

import re
from pathlib import Path

import torch

from pyrovae import spec

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
HAND_WRITTEN = "Laplace"  # the hand-written Pyro model's block, which stands alone


def test_readme_python_example_runs(capsys):
    code = "\n".join(block for block in BLOCKS if HAND_WRITTEN not in block)
    assert "range(20)" in code
    exec(compile(code.replace("range(20)", "range(1)"), "README.md", "exec"), {})
    assert "'elbo'" in capsys.readouterr().out


def test_readme_hand_written_pyro_model_trains_and_gets_bounds(capsys):
    (code,) = [block for block in BLOCKS if HAND_WRITTEN in block]
    exec(compile(code.replace("range(3)", "range(1)"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'test_elbo'" in out and "L_100 -" in out


def test_readme_toml_spec_builds():
    (text,) = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    model, guide = spec.build(spec.tomllib.loads(text), data_dim=784)
    assert [n.site for n in guide.nodes] == ["style", "stroke"] and model.observation.parents == ("style", "stroke")
    assert model(torch.rand(2, 784)).shape == (2, 784)
