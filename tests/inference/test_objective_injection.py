"""Objectives, optimizers and auxiliary loss terms injected into the Trainer."""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from test_trace_elbo import _HostReads

from pyrovae.data import Dataset
from pyrovae.errors import FieldError
from pyrovae.inference import IWAE, TrainConfig, Trainer, make_objective
from pyrovae.inference.objectives import AuxiliaryLoss, objective_options
from pyrovae.inference.parameters import load_params
from pyrovae.inference.train_config import METRICS

from conftest import binary_images, make_vae

CONFIG = TrainConfig(batch_size=16, lr=1e-2, eval_batch_size=25)


def tiny(dtype=torch.float64) -> Dataset:
    x = torch.as_tensor(binary_images(64, dim=12), dtype=dtype)
    return Dataset("tiny", {"train": x[:48], "test": x[48:]})


def double_vae():
    return tuple(m.double() for m in make_vae(data_dim=12, latent_dim=2, hidden=(16,)))


def encoder_energy(model, guide, x):
    """A differentiable auxiliary loss summed over the minibatch: the squared posterior means."""
    return guide.encoder(x)[0].pow(2).sum()


PYRO_ELBOS = [Trace_ELBO(), TraceMeanField_ELBO(), TraceEnum_ELBO(max_plate_nesting=1)]


@pytest.mark.parametrize("objective", PYRO_ELBOS, ids=lambda o: type(o).__name__)
def test_pyro_elbo_instances_train_a_pyrovae_vae(objective):
    trainer = Trainer(*double_vae(), tiny(), CONFIG, objective=objective, progress=False)
    assert trainer.objective is objective
    rows = [trainer.train_epoch() for _ in range(6)]
    assert all(math.isfinite(r["test_elbo"]) for r in rows)
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"]


def test_pyro_trace_elbo_steps_are_the_default_objective_steps():
    data, x = tiny(), tiny().splits["train"]
    model, guide = double_vae()
    runs, initial = [], None
    for objective in (None, Trace_ELBO()):
        trainer = Trainer(model, guide, data, CONFIG, objective=objective, progress=False)
        initial = initial or {n: p.detach().clone() for n, p in trainer.params.items()}
        load_params(initial)
        pyro.set_rng_seed(1)
        with pyro.validation_enabled(False):  # as in train_epoch
            runs.append([trainer.step(x[i : i + 16], 0.5).item() for i in (0, 16, 32)])
    assert runs[0] == pytest.approx(runs[1], rel=1e-12)


def test_objective_by_name_takes_the_config_options():
    config = TrainConfig(objective="iwae", objective_options={"num_particles": 5, "gradient": "dreg"})
    trainer = Trainer(*make_vae(data_dim=12), tiny(torch.float32), config, progress=False)
    assert isinstance(trainer.objective, IWAE)
    assert (trainer.objective.num_particles, trainer.objective.gradient) == (5, "dreg")


@pytest.mark.parametrize(
    ("objective", "options", "message"),
    [
        ("elbo", {"gradient": "dreg"}, "objective_options.gradient is not an option of objective elbo (it takes "
         "num_particles)"),
        ("renyi", {"alpha": 1}, "objective_options.alpha must not be 1 (the Renyi bound of order 1 is the ELBO"),
        ("iwae", {"num_particles": 0}, "objective_options.num_particles must be a positive integer, got 0"),
        ("iwae", {"gradient": "reinforce"}, "objective_options.gradient must be one of standard, dreg"),
    ],
)  # fmt: skip
def test_objective_options_are_the_objectives_own(objective: str, options: dict, message: str):
    with pytest.raises(FieldError) as e:
        TrainConfig(objective=objective, objective_options=options)
    assert str(e.value).startswith(message), str(e.value)
    assert objective_options("renyi") == {"num_particles": 1, "alpha": 0.5}  # the builder's keywords


def test_config_defaults_when_omitted():
    trainer = Trainer(*make_vae(data_dim=12), tiny(torch.float32), progress=False)
    assert trainer.config == TrainConfig() and trainer.optimizer.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        (object(), "objective must be a name in elbo"),
        ("vi", "objective must be one of elbo, mf-elbo, iwae, renyi, tc-elbo, capacity"),
    ],
)
def test_an_objective_that_is_not_one_is_refused(objective, message: str):
    with pytest.raises((TypeError, ValueError), match=message):
        Trainer(*make_vae(data_dim=12), tiny(torch.float32), objective=objective, progress=False)


def test_optimizer_factory_builds_the_optimizer():
    trainer = Trainer(*double_vae(), tiny(), CONFIG, optimizer=lambda p: torch.optim.SGD(p, lr=0.05), progress=False)
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    pyro.clear_param_store()
    with pytest.raises(TypeError, match=r"must return a torch\.optim\.Optimizer"):
        Trainer(*double_vae(), tiny(), CONFIG, optimizer=lambda p: None, progress=False)


def test_a_custom_optimizer_keeps_its_learning_rate_on_resume():
    sgd = lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)  # noqa: E731
    first = Trainer(*double_vae(), tiny(), CONFIG, optimizer=sgd, progress=False)
    first.step(tiny().splits["train"][:16], 1.0)
    state = first.state_dict()
    pyro.clear_param_store()
    slower = lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)  # noqa: E731
    resumed = Trainer(*double_vae(), tiny(), CONFIG, optimizer=slower, progress=False)
    resumed.load_state_dict(state)
    assert resumed.optimizer.param_groups[0]["lr"] == 0.01 and resumed.optimizer.state


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_an_auxiliary_term_adds_its_weighted_value_and_gradient(objective: str):
    data, x = tiny(), tiny().splits["train"][:16]
    model, guide = double_vae()
    aux = AuxiliaryLoss("energy", 0.25, encoder_energy)
    particles = 5 if objective == "iwae" else 1
    config = TrainConfig(batch_size=16, objective=objective, objective_options={"num_particles": particles})
    trainer = Trainer(model, guide, data, config, aux=[aux], optimizer=lambda p: torch.optim.SGD(p, lr=1e-3))
    initial = {n: p.detach().clone() for n, p in trainer.params.items()}
    # by hand: the objective on the same draws, plus weight * (N / B) * the term
    pyro.set_rng_seed(1)
    loss = make_objective(objective, num_particles=particles).differentiable_loss(model, guide, x, num_data=48)
    loss = loss + 0.25 * (48 / 16) * encoder_energy(model, guide, x)
    grads = dict(zip(trainer.params, torch.autograd.grad(loss, list(trainer.params.values())), strict=True))
    pyro.set_rng_seed(1)
    assert trainer.step(x, 1.0).item() == pytest.approx(loss.item(), rel=1e-12)
    for name, p in trainer.params.items():
        assert torch.allclose(p, initial[name] - 1e-3 * grads[name], rtol=0, atol=1e-12), name
    assert any(grads[name].abs().sum() > 0 for name in trainer.params if "encoder" in name)


def test_an_auxiliary_term_is_recorded_per_epoch_outside_the_metrics():
    constant = AuxiliaryLoss("two", 0.5, lambda model, guide, x: x.new_full((), 2.0 * x.shape[0]))  # 2 per datapoint
    plain = Trainer(*double_vae(), tiny(), CONFIG, progress=False)
    plain_row = plain.train_epoch()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with_aux = Trainer(*double_vae(), tiny(), CONFIG, aux=(constant,), progress=False)
    row = with_aux.train_epoch()
    assert "aux_two" not in METRICS and "aux_two" not in plain_row
    assert row["aux_two"] == pytest.approx(2.0, rel=1e-12)  # 48 rows / 16: equal batches
    assert row["train_loss"] == pytest.approx(plain_row["train_loss"] + 0.5 * 2.0, rel=1e-9)


def test_an_auxiliary_term_reads_nothing_back_to_the_host(monkeypatch):
    x = torch.as_tensor(binary_images(40, dim=12), dtype=torch.float32)
    data = Dataset("tiny", {"train": x[:32], "test": x[32:]})
    aux = AuxiliaryLoss("energy", 0.1, encoder_energy)
    trainer = Trainer(*make_vae(data_dim=12), data, TrainConfig(batch_size=8), aux=[aux], progress=False)
    reads = _HostReads(monkeypatch)
    with pyro.validation_enabled(False):  # as in Trainer.train_epoch
        for i in range(3):
            trainer.step(x[8 * i : 8 * i + 8], 0.5)
    assert reads.count == 0 and trainer._aux_sums["energy"].requires_grad is False


@pytest.mark.parametrize(
    ("aux", "error", "message"),
    [
        ([AuxiliaryLoss("a", 1.0, encoder_energy)] * 2, ValueError, "names must be distinct"),
        ([encoder_energy], TypeError, "aux must hold AuxiliaryLoss terms"),
    ],
)
def test_bad_auxiliary_terms_are_refused(aux, error, message: str):
    with pytest.raises(error, match=message):
        Trainer(*make_vae(data_dim=12), tiny(torch.float32), aux=aux, progress=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "a b"}, "name must be an identifier"),
        ({"weight": math.nan}, "weight must be a finite number"),
        ({"weight": True}, "weight must be a finite number"),
        ({"fn": 3}, "fn must be callable"),
    ],
)
def test_an_auxiliary_loss_checks_its_fields(options: dict, message: str):
    with pytest.raises((TypeError, ValueError), match=message):
        AuxiliaryLoss(**{"name": "a", "weight": 1.0, "fn": encoder_energy, **options})


def test_out_of_memory_under_particles_is_not_blamed_on_broadcasting(monkeypatch):
    trainer = Trainer(
        *double_vae(),
        tiny(),
        TrainConfig(batch_size=16, objective="iwae", objective_options={"num_particles": 5}),
        progress=False,
    )

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer.objective, "differentiable_loss", out_of_memory)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        trainer.step(tiny().split("train")[:16], 1.0)
