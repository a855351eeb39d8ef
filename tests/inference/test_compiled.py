"""The compiled step (inference/compiled.py): the traced graph's loss and gradients are the eager step's, for every
objective and every family; Dynamo sees one graph with no break and no recompilation; what cannot be traced
trains uncompiled after one warning."""

import functools

import pyro
import pytest
import torch
from torch._dynamo.utils import counters

from pyrovae import families, spec
from pyrovae.data import Dataset
from pyrovae.inference import AuxiliaryLoss, TrainConfig, Trainer
from pyrovae.inference.compiled import CompileFallbackWarning, StepGraph, average_gradients

from conftest import SMALL, binary_images

OBJECTIVES = [
    ("elbo", {}),
    ("mf-elbo", {}),
    ("elbo", {"num_particles": 3}),
    ("iwae", {"num_particles": 3}),
    ("iwae", {"num_particles": 3, "gradient": "dreg"}),
    ("renyi", {"num_particles": 3, "alpha": 0.5}),
    ("renyi", {"num_particles": 3, "alpha": 0.0}),
    ("tc-elbo", {"tc_weight": 4.0}),
    ("tc-elbo", {"num_particles": 3}),
]


def tiny_data(labels: bool = False) -> Dataset:
    x = torch.as_tensor(binary_images(60, dim=16), dtype=torch.float32)
    y = {"train": torch.arange(40) % 10, "test": torch.arange(20) % 10} if labels else None
    return Dataset("tiny", {"train": x[:40], "test": x[40:]}, y, image_shape=(1, 4, 4))


def built(table: dict | str, **options) -> tuple:
    s = spec.with_options(spec.load(table), hidden=(8,), **options)
    return spec.build(s, data_dim=16, image_shape=(1, 4, 4))


def trained(
    table: dict | str,
    config: TrainConfig,
    betas: tuple[float, ...],
    *,
    backend: str | None = None,
    aux: tuple = (),
    **options,
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], Trainer]:
    """Losses and parameters after one step per beta, from the same initial weights and draws."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    model, guide = built(table, **options)
    data = tiny_data(labels=bool(model.inputs))
    trainer = Trainer(model, guide, data, config, progress=False, labels=bool(model.inputs), aux=aux)
    if trainer.compiled is not None:
        trainer.compiled.backend = backend
    batch = next(data.train_batches(20, torch.Generator().manual_seed(0), labels=bool(model.inputs)))
    torch.manual_seed(1)
    with pyro.validation_enabled(False):
        losses = [trainer.step(batch, beta) for beta in betas]
    return losses, {n: p.detach().clone() for n, p in trainer.params.items()}, trainer


def assert_same_steps(table: dict | str, config: TrainConfig, betas=(1.0, 0.5), **kwargs) -> Trainer:
    eager_losses, eager_params, _ = trained(table, config, betas, **kwargs)
    losses, params, trainer = trained(table, TrainConfig(**{**config.__dict__, "compile": True}), betas, **kwargs)
    assert trainer.compiled is not None and trainer.compiled.failed is None
    torch.testing.assert_close(torch.stack(losses), torch.stack(eager_losses))
    for name, value in eager_params.items():  # the same gradients, hence the same Adam steps
        torch.testing.assert_close(params[name], value, msg=name)
    return trainer


@pytest.mark.parametrize(("objective", "options"), OBJECTIVES)
def test_every_objective_steps_as_the_eager_step(objective: str, options: dict):
    config = TrainConfig(batch_size=20, objective=objective, objective_options=options)
    betas = (1.0,) if options.get("gradient") == "dreg" else (1.0, 0.5)  # dreg at 0 < beta < 1: see below
    betas += (0.0,) if objective == "elbo" and not options else ()  # a masked KL (the autoencoders' beta)
    trainer = assert_same_steps("vae", config, betas)
    assert len(trainer.compiled.graphs) == len(betas)  # beta 1 and 0 are constants, another beta an input


def vae_with(**latent) -> dict:
    table = spec.to_table(spec.load("vae"))
    table["latent"] = [{**table["latent"][0], **latent}]
    return table


CONTINUOUS = [n for n in families.names("guide") if n not in ("diag", "bernoulli", "categorical", "delta")]
PRIORS = [n for n in families.names("prior") if n not in ("diag", "bernoulli", "categorical")]
ENUMERATED = ("gmvae", "m2")  # trained by Pyro's TraceEnum_ELBO: not traceable (below)
SLOW = pytest.mark.slow  # the other families of each role, about 0.6 s each
FAMILY_CASES = (
    [pytest.param(name, {}, id=name) for name in spec.BUILTIN if name not in ENUMERATED]
    + [pytest.param("vae", {"guide": g}, id=f"guide-{g}", marks=() if g == "iaf" else SLOW) for g in CONTINUOUS]
    + [
        pytest.param(vae_with(prior={"family": p}), {}, id=f"prior-{p}", marks=() if p == "vamp" else SLOW)
        for p in PRIORS
    ]
    + [
        pytest.param("vae", {"likelihood": lik}, id=f"likelihood-{lik}", marks=() if lik == "gaussian" else SLOW)
        for lik in families.names("likelihood")
    ]
    + [pytest.param("gmvae", {"discrete": d}, id=f"gmvae-{d}") for d in ("relaxed", "straight-through")]
    + [pytest.param("vae", {"arch": "conv"}, id="conv")]
)


@pytest.mark.parametrize(("table", "options"), FAMILY_CASES)
def test_every_family_steps_as_the_eager_step(table, options: dict):
    assert_same_steps(table, TrainConfig(batch_size=20), betas=(0.5,), **options)


def test_binary_latents_by_vimco_and_an_auxiliary_term_step_as_the_eager_step():
    sbn = {
        "likelihood": "bernoulli",
        "latent": [{"name": "h", "size": 6, "estimator": "score", "prior": {"family": "bernoulli", "learn": True},
                    "encoder": {"given": ["x"], "family": "bernoulli"}}],
        "x": {"given": ["h"]},
    }  # fmt: skip
    assert_same_steps(sbn, TrainConfig(batch_size=20, objective="iwae", objective_options={"num_particles": 3}))
    l2 = AuxiliaryLoss("l2", 0.1, lambda model, guide, x: sum((p**2).sum() for p in guide.parameters()))
    trainer = assert_same_steps("vae", TrainConfig(batch_size=20), aux=(l2,))
    assert float(trainer._aux_sums["l2"]) > 0


def test_dynamo_sees_one_graph_per_shape_without_breaks_or_recompiles():
    counters.clear()
    pyro.clear_param_store()
    model, guide = built("vae")
    data = tiny_data()
    trainer = Trainer(model, guide, data, TrainConfig(batch_size=20, compile=True), progress=False)
    trainer.compiled.backend = "eager"  # Dynamo alone: what it captures, without inductor's code generation
    x = data.split("train")
    with pyro.validation_enabled(False):
        for beta in (0.2, 0.4, 0.6, 0.8):  # KL annealing: beta is the graph's input
            trainer.step(x[:20], beta)
        trainer.step(x[:7], 0.9)  # the short last batch of an epoch: a graph of its own
    assert len(trainer.compiled.graphs) == 2
    assert counters["stats"]["unique_graphs"] == 2
    assert not counters["graph_break"]  # fullgraph=True would raise at one; counted for the record
    assert not counters["recompiles"]


def test_a_value_dependent_step_trains_uncompiled_after_one_warning():
    pyro.clear_param_store()
    torch.manual_seed(0)
    model, guide = built("vae")

    class PeekingGuide(torch.nn.Module):  # reads a tensor's value in Python: no fake tensor has one
        def __init__(self):
            super().__init__()
            self.guide = guide

        def forward(self, x, *, beta=1.0, num_data=None):
            return self.guide(x if x.sum() > 0 else 1 - x, beta=beta, num_data=num_data)

    data = tiny_data()
    trainer = Trainer(model, PeekingGuide(), data, TrainConfig(batch_size=20, compile=True), progress=False)
    x = data.split("train")[:20]
    with (
        pyro.validation_enabled(False),
        pytest.warns(CompileFallbackWarning, match="could not be compiled .it reads a tensor's value in Python"),
    ):
        first = trainer.step(x, 1.0)
    with pyro.validation_enabled(False):
        second = trainer.step(x, 1.0)  # no second warning (warnings are errors here)
    assert trainer.compiled.failed and torch.isfinite(first) and torch.isfinite(second)


def test_dreg_with_a_fractional_beta_falls_back_with_the_reason():
    config = TrainConfig(batch_size=20, objective="iwae", objective_options={"num_particles": 3, "gradient": "dreg"})
    eager_losses, eager_params, _ = trained("vae", config, (0.5,))
    with pytest.warns(CompileFallbackWarning, match="tensor scale"):
        losses, params, _ = trained("vae", TrainConfig(**{**config.__dict__, "compile": True}), (0.5,))
    torch.testing.assert_close(losses[0], eager_losses[0])  # the eager step, after the warning
    assert all(torch.equal(params[n], v) for n, v in eager_params.items())


@pytest.mark.parametrize(
    ("table", "options", "reason"),
    [("gmvae", {}, "TraceEnum_ELBO"), ("m2", {}, "TraceEnum_ELBO"), ("gmvae", {"discrete": "score"}, "TraceGraph")],
)
def test_enumeration_and_nvil_train_uncompiled_after_one_warning(table: str, options: dict, reason: str):
    with pytest.warns(CompileFallbackWarning, match=reason):
        losses, params, trainer = trained(table, TrainConfig(batch_size=20, compile=True), (1.0,), **options)
    assert trainer.compiled is None
    eager_losses, eager_params, _ = trained(table, TrainConfig(batch_size=20), (1.0,), **options)
    torch.testing.assert_close(losses[0], eager_losses[0])  # the eager step, after the warning
    assert all(torch.equal(params[n], v) for n, v in eager_params.items())


def test_plain_function_parameters_train_uncompiled_after_one_warning(small_data: Dataset):
    def model(x):
        loc = pyro.param("loc", torch.zeros(16))
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("x", pyro.distributions.Bernoulli(logits=loc).to_event(1), obs=x)

    def guide(x):
        pass

    with pytest.warns(CompileFallbackWarning, match="pyro.params of plain functions"):
        trainer = Trainer(model, guide, small_data, TrainConfig(batch_size=20, compile=True), progress=False)
    assert trainer.compiled is None


def test_averaged_gradients_keep_unused_ones_and_shapes():
    grads = [torch.ones(2, 3), None, torch.arange(4.0)]
    averaged = average_gradients(grads, lambda flat: flat / 2)  # a stand-in for the all-reduce's mean
    assert averaged[1] is None
    torch.testing.assert_close(averaged[0], torch.full((2, 3), 0.5))
    torch.testing.assert_close(averaged[2], torch.arange(4.0) / 2)


def test_the_config_refuses_a_compile_that_is_not_a_boolean():
    with pytest.raises(ValueError, match="compile must be true or false"):
        TrainConfig(compile="yes")


@pytest.mark.slow  # inductor compiles each objective's graph: about 10 s each
@pytest.mark.parametrize(("objective", "options"), [OBJECTIVES[0], OBJECTIVES[3], OBJECTIVES[5]])
def test_inductor_steps_as_the_eager_step(objective: str, options: dict):
    from torch._inductor import config as inductor

    config = TrainConfig(batch_size=20, objective=objective, objective_options=options)
    with inductor.patch(fallback_random=True):  # eager's random numbers, for the check
        assert_same_steps("vae", config, backend="inductor")


def test_the_command_line_compiles_and_resume_may_turn_it_off(amat_dir, tmp_path, capsys, monkeypatch):
    import json

    from pyrovae import cli
    from pyrovae.inference import training

    monkeypatch.setattr(training, "StepGraph", functools.partial(StepGraph, backend=None))  # no inductor: fast
    out = str(tmp_path / "run")
    data = ["--dataset", "binarized-mnist", "--data-dir", str(amat_dir), *SMALL]
    assert cli.main(["train", "--out", out, "--epochs", "1", "--compile", *data]) == 0
    assert "compiled the training step: 1 graph(s) in" in capsys.readouterr().out  # 120 rows: 3 batches of 40
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["compile"] is True
    assert cli.main(["train", "--out", out, "--resume", "--epochs", "2", "--no-compile", "--no-progress"]) == 0
    assert "compiled the training step" not in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["compile"] is False
