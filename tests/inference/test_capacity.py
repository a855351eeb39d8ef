"""The capacity objective: its value by hand, the target's schedule, and the trainer giving it the step."""

import pytest
import torch
from pyro.distributions.kl import kl_divergence

from pyrovae.inference import TrainConfig, Trainer, make_objective
from pyrovae.inference.capacity import CapacityELBO
from pyrovae.inference.compiled import untraceable

from conftest import binary, make_vae


@pytest.mark.parametrize("step", [0, 50, 100, 400])
def test_loss_is_reconstruction_plus_gamma_times_the_distance_to_the_target(step: int):
    model, guide = make_vae()
    x = binary(5)
    objective = CapacityELBO(gamma=30.0, capacity=2.0, capacity_steps=100).at_step(step)
    torch.manual_seed(1)
    loss = objective.differentiable_loss(model, guide, x, num_data=50)
    torch.manual_seed(1)
    q = guide.posterior(x)
    reconstruction = model.likelihood(q.rsample()).log_prob(x)  # (5,)
    kl = kl_divergence(q, model.prior(5))  # analytic, (5,)
    target = 2.0 * min(1.0, step / 100)
    expected = 50 * (-reconstruction.mean() + 30.0 * (kl.mean() - target).abs())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_at_step_leaves_the_objective_as_it_was():
    objective = CapacityELBO(capacity=10.0, capacity_steps=10)
    later = objective.at_step(5)
    assert (objective.target.value, later.target.value) == (0.0, 5.0)
    assert later.gamma == objective.gamma and later.num_particles == objective.num_particles


class StepRecorder(CapacityELBO):
    """The capacity objective, recording the steps the trainer asks it for."""

    def __init__(self, steps: list[int]) -> None:
        super().__init__(gamma=1.0, capacity=1.0, capacity_steps=10)
        self.steps = steps

    def at_step(self, step: int) -> CapacityELBO:
        self.steps.append(step)
        return super().at_step(step)


@pytest.mark.filterwarnings("ignore::pyrovae.inference.diagnostics.PosteriorCollapseWarning")
def test_the_trainer_asks_for_every_step_of_the_run(small_data):
    model, guide = make_vae(data_dim=16)
    steps: list[int] = []
    config = TrainConfig(epochs=2, batch_size=20, eval_batch_size=20)
    trainer = Trainer(model, guide, small_data, config, objective=StepRecorder(steps), progress=False)
    trainer.train_epoch()
    trainer.train_epoch()
    assert steps == list(range(6))  # 60 training rows in batches of 20: 3 steps per epoch


def test_the_compiled_step_refuses_a_target_that_moves():
    assert "changes with the step" in untraceable(make_objective("capacity"))


@pytest.mark.parametrize(
    ("options", "field"),
    [({"gamma": 0.0}, "gamma"), ({"capacity": -1.0}, "capacity"), ({"capacity_steps": 0}, "capacity_steps")],
)
def test_options_are_checked_by_name(options: dict, field: str):
    with pytest.raises(ValueError, match=field):
        make_objective("capacity", **options)


@pytest.mark.parametrize(("beta", "anneal"), [(4.0, "constant"), (1.0, "linear:100")])
def test_a_kl_weight_beside_gamma_is_refused(beta: float, anneal: str):
    with pytest.raises(ValueError, match="capacity"):
        TrainConfig(objective="capacity", beta=beta, kl_anneal=anneal)
