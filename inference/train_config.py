"""A training run's settings (:class:`TrainConfig`), the metrics each epoch records, and how a run fails.

``metrics.csv`` has the :data:`METRICS` columns; :func:`heldout_elbo` and :func:`best_epoch` read the held-out
ELBO of a row and the best epoch of a history, for the trainer, early stopping and the command line alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyrovae.errors import FieldError, check_choice, check_float, check_int, check_type
from pyrovae.inference.annealing import parse_schedule
from pyrovae.inference.lr_schedule import parse_lr_schedule
from pyrovae.inference.objectives import OBJECTIVES, check_options

# metrics.csv's columns: valid_elbo or test_elbo (the other empty) is the held-out split's ELBO, and
# heldout_split names that split, on which active_units (and kl_per_dim.csv) are measured too
METRICS = (
    "epoch",
    "train_elbo",
    "valid_elbo",
    "test_elbo",
    "reconstruction",
    "kl",
    "beta",
    "train_loss",
    "seconds",
    "active_units",
    "heldout_split",
)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all of them go into ``config.json``)."""

    epochs: int = 50  # passes over the training split (50 x 4,500 mnist-5k digits: ~40 s on 2 cores with evaluation)
    batch_size: int = 100  # datapoints per SVI step
    lr: float = 1e-3  # Adam learning rate
    lr_schedule: str = "constant"  # constant | cosine | step:EVERY:GAMMA, a factor on lr per epoch
    objective: str = "elbo"  # a name in pyrovae.inference.objectives.OBJECTIVES
    # That objective's options (objective_options(objective)): num_particles (k), gradient (iwae:
    # standard | dreg), alpha (renyi), tc_weight (tc-elbo), gamma, capacity, capacity_steps (capacity); those
    # left out take the objective's defaults.
    objective_options: dict = field(default_factory=dict)
    beta: float = 1.0  # KL weight reached by the annealing schedule (beta-VAE)
    kl_anneal: str = "constant"  # constant | linear:STEPS | cyclical:PERIOD[:RATIO]
    seed: int = 0  # seeds the per-epoch shuffle and binarization
    eval_batch_size: int = 1000  # chunk size of the per-epoch ELBO evaluation
    log_every: int = 50  # steps between progress-bar refreshes and NaN checks (the only host syncs)
    clip_norm: float | None = None  # largest gradient norm of the per-datapoint loss; None: no clipping
    # Stop after this many epochs without a higher validation ELBO (pyrovae train keeps the best epoch's
    # parameters); None: train every epoch. Needs a validation split.
    early_stopping: int | None = None
    # Trace each step (guide, model, loss, gradients) into one graph and compile it with torch.compile
    # (inductor): the same loss and gradients without Pyro's Python per step (pyrovae.inference.compiled).
    compile: bool = False

    def __post_init__(self) -> None:
        """Every setting of the right type and in range, else a :class:`~pyrovae.errors.FieldError` naming it."""
        if not isinstance(self.compile, bool):
            raise FieldError("compile", f"must be true or false, got {self.compile!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "log_every"):
            check_int(name, getattr(self, name))
        check_int("seed", self.seed, low=0, high=2**32 - 1)  # numpy's seeds
        check_float("lr", self.lr, positive=True)
        if self.clip_norm is not None:
            check_float("clip_norm", self.clip_norm, positive=True)
        if self.early_stopping is not None:
            check_int("early_stopping", self.early_stopping)
        check_float("beta", self.beta)  # a float32 poutine.scale: 1e300 would be infinite
        check_choice("objective", self.objective, tuple(OBJECTIVES))
        try:
            check_options(self.objective, self.objective_options)
        except FieldError as e:
            raise FieldError(f"objective_options.{e.field}", e.problem) from None
        if self.objective == "capacity" and (self.beta != 1 or self.kl_anneal != "constant"):
            raise FieldError(
                "beta" if self.beta != 1 else "kl_anneal",
                "does not apply to objective capacity, whose gamma weighs |KL - C| and whose C rises by its own "
                "schedule (capacity_steps); leave beta at 1 and kl_anneal constant",
            )
        check_type("kl_anneal", self.kl_anneal, str, "a schedule such as constant, linear:STEPS or cyclical:PERIOD")
        try:
            parse_schedule(self.kl_anneal, self.beta)
        except ValueError as e:
            raise FieldError("kl_anneal", str(e)) from None
        check_type("lr_schedule", self.lr_schedule, str, "a schedule such as constant, cosine or step:EVERY:GAMMA")
        try:
            parse_lr_schedule(self.lr_schedule)
        except ValueError as e:
            raise FieldError("lr_schedule", str(e)) from None


class Diverged(ArithmeticError):
    """The loss or the parameters became NaN or infinite; the epoch in progress is lost.

    :param epoch: the epoch in progress (1-based).
    :param step: the first optimisation step (1-based, counted over the whole run)
        whose loss was not finite, or at which the parameters were found not finite.
    :param last_finite_loss: the last finite loss seen, per datapoint; ``None`` if none was.
    """

    def __init__(self, *, epoch: int, step: int, last_finite_loss: float | None) -> None:
        self.epoch, self.step, self.last_finite_loss = epoch, step, last_finite_loss
        last = "none seen" if last_finite_loss is None else f"{last_finite_loss:.4f} nats per datapoint"
        super().__init__(
            f"training diverged: the loss or the parameters became NaN or infinite at step {step} "
            f"(epoch {epoch}); last finite loss: {last}"
        )


def heldout_elbo(row: dict) -> tuple[str, float]:
    """An epoch's row's held-out split and its ELBO: ``valid_elbo`` where measured, else ``test_elbo``."""
    valid = row.get("valid_elbo")
    if valid is not None and not math.isnan(valid):
        return "valid", valid
    return "test", row["test_elbo"]


def best_epoch(history: Sequence[dict]) -> int | None:
    """The epoch (1-based) of ``history``'s highest held-out ELBO, the first of ties; ``None`` before any."""
    scores = [heldout_elbo(row)[1] for row in history]
    return 1 + scores.index(max(scores)) if scores else None
