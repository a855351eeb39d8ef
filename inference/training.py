"""The SVI training loop: epochs over a device-resident data set, the true ELBO per epoch.

One step is Pyro's ``SVI.step`` (differentiate the objective's surrogate loss,
optionally clip the gradient norm, step the optimizer over the param store) with
two differences. The parameters are collected once, when the trainer is built,
and stepped by one (fused where available) Adam instead of Pyro's one optimizer
per parameter; gradients are dropped rather than zero-filled. And the loss stays
a tensor: neither the objectives (:mod:`.trace_elbo`, :mod:`.iwae`, :mod:`.renyi`)
nor the loop move a number to the host during an epoch, except every
``log_every`` steps, when the progress bar is refreshed and the losses since
the last refresh are checked for NaN and infinity.

The objective (any ``pyro.infer.ELBO``, or a name), the optimizer and auxiliary
loss terms are injected (:class:`Trainer`); beta and N / B reach a plain Pyro model
through the effect handlers of :mod:`.handlers`.

References: R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent
neural networks", ICML 2013 (gradient-norm clipping).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyro
import pyro.util
import torch
from pyro import poutine
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from pyrovae.data import Dataset
from pyrovae.distributed import Shard, from_rank_0, mean_over_ranks
from pyrovae.errors import FieldError, InputError, check_choice, check_float, check_int, check_type, is_out_of_memory
from pyrovae.formats import DataError
from pyrovae.inference.annealing import parse_schedule
from pyrovae.inference.diagnostics import (
    PosteriorCollapseWarning,
    active_units,
    collapse_message,
    kl_per_dim,
    stochastic_latents,
)
from pyrovae.inference.evaluation import evaluate_elbo
from pyrovae.inference.handlers import bind_scales, particle_error, takes_scales, unwrapped
from pyrovae.inference.log_weights import data_plate_name, enumerated_sites, plate_frame, sample_sites
from pyrovae.inference.lr_schedule import parse_lr_schedule
from pyrovae.inference.objectives import (
    OBJECTIVES,
    AuxiliaryLoss,
    as_objective,
    check_auxiliary,
    check_options,
    vectorized_particles,
)
from pyrovae.primitives import batch_args

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
    # standard | dreg), alpha (renyi); those left out take the objective's defaults.
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

    def __post_init__(self) -> None:
        """Every setting of the right type and in range, else a :class:`~pyrovae.errors.FieldError` naming it."""
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


class Trainer:
    """Train ``model``/``guide`` (called as ``fn(x)``, or ``fn(x, y)`` with ``labels=True``) on ``data``.

    Any Pyro model and guide with their per-datapoint sites in a plate named
    ``"data"`` at dim -1 train: beta (on the latent sites) and the subsample scale
    N / B (on the data plate's sites) are applied from outside by the effect handlers
    of :mod:`.handlers`, so sites outside the data plate (global latents) get no
    N / B. A model or guide that names ``beta`` and ``num_data`` in its signature
    (pyrovae's own) is called as ``fn(x, *, beta, num_data)`` instead and applies them
    itself. With more than one vectorized particle, model and guide must broadcast
    over a leading particle dimension (dim -2).

    :param config: the run's settings; ``config.objective_options`` apply only when ``objective``
        is ``None`` or a name, ``config.lr`` only to the default optimizer.
    :param objective: an object with ``differentiable_loss(model, guide, *args)`` (any
        ``pyro.infer.ELBO``, e.g. ``TraceEnum_ELBO(max_plate_nesting=1)``, with its own
        options) or a name in :data:`~pyrovae.inference.objectives.OBJECTIVES`; ``None``: ``config.objective``.
        A name is built for the model: where model or guide enumerate a site (a categorical latent),
        ``"elbo"`` is Pyro's ``TraceEnum_ELBO`` (:func:`~pyrovae.inference.objectives.make_objective`).
    :param optimizer: ``params -> torch.optim.Optimizer``, called once on the parameters
        (sorted by name); ``None``: one fused Adam at ``config.lr``.
    :param aux: :class:`~pyrovae.inference.objectives.AuxiliaryLoss` terms; each step's
        loss is the objective plus ``weight * (N / B) * fn(model, guide, *batch)`` for each.
    :param metrics: name -> a function of nothing, evaluated after each epoch and recorded in its
        row under ``name`` (e.g. a classifier's test accuracy).

    Every epoch appends a row to :attr:`history` with, in nats per datapoint,
    ``train_elbo`` and the held-out split's ``valid_elbo`` (where the data has a validation split;
    the test split is then left to evaluation) or else ``test_elbo`` (the true ELBO at beta = 1, on fixed
    binarizations of the splits), ``heldout_split`` (which of the two), ``reconstruction`` and ``kl`` (the
    two terms of ``train_elbo``), the ``beta`` in force at the epoch's end, ``train_loss`` (the
    mean training objective, beta-weighted), ``seconds`` (training steps only),
    ``active_units`` (all latent sites in the data plate, on the held-out split),
    ``kl_per_dim`` (``{site: [KL per dimension]}`` on the held-out split) and, per auxiliary
    term, ``aux_<name>`` (its epoch mean per datapoint, unweighted); the last two are
    not ``METRICS`` columns. ``train_loss`` includes the weighted auxiliary terms.
    An epoch at which the posterior collapses onto the prior, after one at which
    it had not, raises a :class:`PosteriorCollapseWarning` (never for a guide
    whose latents are all point masses: an autoencoder has no posterior).

    Parameters live in Pyro's param store; clear it before building a new model.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        data: Dataset,
        config: TrainConfig | None = None,
        *,
        objective: object | str | None = None,
        optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
        aux: Sequence[AuxiliaryLoss] = (),
        metrics: Mapping[str, Callable[[], float]] | None = None,
        progress: bool = True,
        labels: bool = False,
        shard: Shard | None = None,
    ) -> None:
        config = TrainConfig() if config is None else config
        self.shard = shard  # data-parallel: this rank's place (pyrovae.distributed); None: one process
        self.model, self.guide, self.data, self.config = model, guide, data, config
        self.progress, self.labels = progress, labels
        self.aux = check_auxiliary(aux)
        self.metrics = dict(metrics or {})
        self._aux_sums: dict[str, torch.Tensor | float] = {}  # each term's sum over the epoch's steps, scaled to N
        self.takes_scales = (takes_scales(model), takes_scales(guide))  # keywords, or the handlers
        if config.early_stopping is not None and data.heldout != "valid":
            raise DataError(
                f"--early-stopping selects epochs by the validation ELBO, and data set {data.name!r} has no "
                "validation split; hold one out of the training split with --valid-fraction 0.1 (or give a file "
                "with a valid array)"
            )
        self.num_data = data.split("train").shape[0]
        first = batch_args(next(data.eval_batches("train", 2, labels=labels)))
        self.params = register_params(*self._programs(1.0), *first)  # name -> tensor
        with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
            self.enumerated = enumerated_sites(model, guide, *first)  # summed exactly by the named objectives
            baselines = bool(baseline_sites(guide, *first))  # score-function sites with NVIL's baselines
        name_or_objective = config.objective if objective is None else objective
        self.objective = as_objective(
            name_or_objective, config.objective_options, enumerated=bool(self.enumerated), baselines=baselines
        )
        with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
            self.can_collapse = bool(stochastic_latents(guide, *first))  # False for point-mass (autoencoder) guides
            self.global_latents = global_latents(model, guide, *first)  # outside the data plate: not diagnosed
        self.optimizer = _optimizer(optimizer, list(self.params.values()), config.lr)
        self._ddp = None if shard is None else self._data_parallel()
        self.schedule = parse_schedule(config.kl_anneal, config.beta)
        self.lr_factor = parse_lr_schedule(config.lr_schedule)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]  # what lr_schedule scales
        self.steps_per_epoch = math.ceil(self.num_data / config.batch_size)
        self.history: list[dict[str, float]] = []
        self.last_finite_loss: float | None = None  # per datapoint, for the Diverged message

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return len(self.history)

    @property
    def best_epoch(self) -> int | None:
        """The completed epoch of the highest held-out ELBO (:func:`best_epoch`)."""
        return best_epoch(self.history)

    @property
    def patience_spent(self) -> bool:
        """Whether ``config.early_stopping`` epochs have passed without a higher validation ELBO than the best's."""
        patience = self.config.early_stopping
        return patience is not None and self.epoch > 0 and self.epoch - self.best_epoch >= patience

    def _programs(self, beta: float) -> tuple[Callable, Callable]:
        """Model and guide with ``beta`` and the training split's N bound (by keyword or by handler)."""
        return tuple(
            bind_scales(fn, beta=beta, num_data=self.num_data, takes=takes)
            for fn, takes in zip((self.model, self.guide), self.takes_scales, strict=True)
        )

    def _data_parallel(self) -> DistributedDataParallel:
        """Model and guide under DDP, whose backward all-reduces (averages) their gradients over the ranks.

        :raises InputError: parameters outside ``nn.Module`` s (a plain function's ``pyro.param``), which DDP
            cannot keep in step.
        """
        modules = self._modules()
        owned = {id(p) for m in modules.values() for p in m.parameters()}
        loose = sorted(name for name, p in self.params.items() if id(p) not in owned)
        if loose:
            raise InputError(
                f"data-parallel training keeps nn.Module parameters in step, and {loose[:3]} are pyro.params of "
                "plain functions; make model and guide nn.Modules (PyroModule) or train in one process"
            )
        # static: the same parameters take part in every step (an unused one, e.g. a baseline, is allowed)
        return DistributedDataParallel(_Step(modules, self._loss), static_graph=True)

    def step(self, x: torch.Tensor | tuple[torch.Tensor, ...], beta: float, *, weight: float = 1.0) -> torch.Tensor:
        """One SVI step on minibatch ``x`` (or ``(x, y)``); returns the loss, auxiliary terms included (detached).

        :param weight: a factor on the loss: a rank's share of a data-parallel batch (:class:`Shard.weight`).
        :raises ParticleBroadcastError: when model or guide run alone but not under the
            objective's vectorized particles (a :class:`ValueError` naming the requirement).
        """
        args = batch_args(x)
        loss = weight * (self._loss(args, beta) if self._ddp is None else self._ddp(args, beta))
        loss.backward()
        if self.config.clip_norm is not None:  # the loss is N x the per-datapoint mean: scale the bound alike
            torch.nn.utils.clip_grad_norm_(self.params.values(), self.config.clip_norm * self.num_data)  # no sync
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _loss(self, args: tuple[torch.Tensor, ...], beta: float) -> torch.Tensor:
        """The objective's differentiable loss on ``args``, auxiliary terms included."""
        model, guide = self._programs(beta)
        try:
            loss = self.objective.differentiable_loss(model, guide, *args)
        except (RuntimeError, ValueError) as e:
            if is_out_of_memory(e):  # not a shape error: the command line names what to make smaller
                raise
            k, dim = vectorized_particles(self.objective)
            explained = e if k == 1 else particle_error(e, model, guide, *args, num_particles=k, dim=dim)
            if explained is e:  # not the particle dimension's fault
                raise
            raise explained from e
        if self.aux:
            loss = loss + self._auxiliary(args)
        return loss

    def _auxiliary(self, args: tuple[torch.Tensor, ...]) -> torch.Tensor | float:
        """sum_j weight_j (N / B) fn_j(model, guide, *args); each unweighted term added to its epoch sum (no sync)."""
        total = 0.0
        for term in self.aux:
            value = term.fn(self.model, self.guide, *args) * (self.num_data / args[0].shape[0])  # scaled to N
            self._aux_sums[term.name] = self._aux_sums.get(term.name, 0.0) + value.detach()
            total = total + term.weight * value
        return total

    def train_epoch(self, stop: Callable[[], bool] = lambda: False) -> dict[str, float] | None:
        """Run one epoch, evaluate, append the epoch's metrics to :attr:`history` and return them.

        Pyro's validation (when enabled) checks model and guide once, when the
        trainer is built; steps and evaluation here run without it, since its
        checks would report a NaN as an unrelated ``ValueError``.

        :param stop: polled after every step; once it returns true the epoch is
            abandoned and ``None`` returned (the parameters are then mid-epoch:
            restore the last :meth:`state_dict` to continue exactly).
        :raises Diverged: when a loss, a parameter or the epoch's ELBO is not finite.
        """
        epoch = self.epoch + 1
        with pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Encountered NaN")  # Pyro's warning; Diverged reports it
            steps = self._steps(epoch, stop)
            if steps is None:
                return None
            total, beta, seconds = steps
            with evaluating(self.model, self.guide):  # the model evaluated as it is, not as it trains
                if self.shard is not None and not self.shard.main:
                    return self._received(epoch)
                row = self._evaluated(epoch, total, beta, seconds)
                if self.shard is not None:  # the other ranks wait for it: their stopping decisions are rank 0's
                    from_rank_0(self._shared_values(row))
                return row

    def _evaluated(self, epoch: int, total: float, beta: float, seconds: float) -> dict[str, float]:
        """The epoch's row: the ELBO of both splits, the diagnostics and metrics, appended to :attr:`history`."""
        batch_size = self.config.eval_batch_size
        count = self.steps_per_epoch * self.num_data  # as train_loss: the mean over steps of the per-datapoint term
        aux = {f"aux_{name}": float(value) / count for name, value in self._aux_sums.items()}
        heldout = self.data.heldout
        train, held = (
            evaluate_elbo(self.model, self.guide, self.data.eval_batches(split, batch_size, labels=self.labels))
            for split in ("train", heldout)
        )
        finite = params_finite() and math.isfinite(train["elbo"]) and math.isfinite(held["elbo"])
        if not finite and self.shard is not None:
            from_rank_0(torch.full((3,), math.nan, device=self.data.device))  # the others raise Diverged too
        if not finite:
            # the last step's update overflowed: no loss shows it yet
            raise Diverged(epoch=epoch, step=epoch * self.steps_per_epoch, last_finite_loss=self.last_finite_loss)
        row = {
            "epoch": epoch,
            "train_elbo": train["elbo"],
            f"{heldout}_elbo": held["elbo"],
            "heldout_split": heldout,
            "reconstruction": train["reconstruction"],
            "kl": train["kl"],
            "beta": beta,
            "train_loss": total / (self.steps_per_epoch * self.num_data),
            "seconds": seconds,
            **self._latent_diagnostics(),
            **aux,
            **self._extra_metrics(),
        }
        self.history.append(row)
        self._warn_on_collapse()
        return row

    def _shared_values(self, row: dict) -> torch.Tensor:
        """What rank 0 sends the others of an epoch's row: the ELBOs (NaN: diverged) and the train loss."""
        values = [row["train_elbo"], heldout_elbo(row)[1], row["train_loss"]]
        return torch.tensor(values, dtype=torch.float64, device=self.data.device)

    def _received(self, epoch: int) -> dict[str, float]:
        """On a rank other than 0: the epoch's row as rank 0 evaluated it (the ELBOs and the train loss), appended
        to :attr:`history`; only rank 0 computes the diagnostics and writes the run.

        :raises Diverged: when rank 0 found the parameters or an ELBO not finite.
        """
        values = from_rank_0(torch.zeros(3, dtype=torch.float64, device=self.data.device)).tolist()
        if not all(map(math.isfinite, values)):
            raise Diverged(epoch=epoch, step=epoch * self.steps_per_epoch, last_finite_loss=self.last_finite_loss)
        train, held, loss = values
        row = {"epoch": epoch, "train_elbo": train, f"{self.data.heldout}_elbo": held, "train_loss": loss}
        self.history.append(row)
        return row

    def _extra_metrics(self) -> dict[str, float]:
        """The ``metrics`` callbacks' values at the epoch's end (on a forked RNG, without gradients)."""
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=[self.data.device] if self.data.device.type == "cuda" else []),
        ):
            return {name: float(fn()) for name, fn in self.metrics.items()}

    def _latent_diagnostics(self) -> dict:
        """Active units and per-dimension KL on the held-out split (on a forked RNG: training draws the same
        numbers)."""
        split, size = self.data.heldout, self.config.eval_batch_size
        test = functools.partial(self.data.eval_batches, split, size, labels=self.labels)
        with torch.random.fork_rng(devices=[self.data.device] if self.data.device.type == "cuda" else []):
            model, guide = self.model, self.guide
            if self.global_latents:  # one draw of them, observed in both programs: the diagnostics see local ones
                guide_trace = poutine.trace(guide).get_trace(*batch_args(next(test())))
                pinned = {name: guide_trace.nodes[name]["value"].detach() for name in self.global_latents}
                model, guide = poutine.condition(model, data=pinned), poutine.condition(guide, data=pinned)
            return {
                "active_units": sum(active_units(guide, test()).values()),
                "kl_per_dim": {site: kl.tolist() for site, kl in kl_per_dim(model, guide, test()).items()},
            }

    def _warn_on_collapse(self) -> None:
        """Warn once when the posterior collapses (not again while it stays collapsed); never for point masses."""
        if not self.can_collapse:
            return
        collapsed = [_collapse_message(row) for row in self.history[-2:]]
        if collapsed[-1] and not (len(collapsed) == 2 and collapsed[0]):
            warnings.warn(f"epoch {self.epoch}: {collapsed[-1]}", PosteriorCollapseWarning, stacklevel=3)

    def _steps(self, epoch: int, stop: Callable[[], bool]) -> tuple[float, float, float] | None:
        """The SVI steps of ``epoch``: the summed loss, the last beta and the seconds taken; ``None`` if stopped."""
        cfg = self.config
        self._aux_sums = {term.name: 0.0 for term in self.aux}
        factor = self.lr_factor(epoch, cfg.epochs)
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * factor
        seed = int(np.random.SeedSequence([cfg.seed, epoch]).generate_state(1)[0])
        generator = torch.Generator(device=self.data.device).manual_seed(seed)  # the same order on every rank
        if self.shard is not None:  # each rank its own draws of z, from the epoch alone: resumable without states
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, self.shard.rank]).generate_state(1)[0]))
        first_step = (epoch - 1) * self.steps_per_epoch
        total, window = 0.0, []  # window: loss tensors since the last check
        disable = None if self.progress else True  # None: off when not a terminal
        with tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}", unit="step", leave=False, disable=disable) as bar:
            start = time.perf_counter()
            for i, x in enumerate(self.data.train_batches(cfg.batch_size, generator, labels=self.labels)):
                beta = self.schedule(first_step + i)
                if self.shard is None:
                    window.append(self.step(x, beta))
                else:  # this rank's share of the batch, weighted
                    share, weight = self._share(x)
                    window.append(self.step(share, beta, weight=weight))
                bar.update()
                if (i + 1) % cfg.log_every == 0 or i + 1 == self.steps_per_epoch:
                    total += self._check(window, epoch, first_step + i + 2 - len(window))  # steps count from 1
                    bar.set_postfix(loss=f"{total / ((i + 1) * self.num_data):.3f}")
                if stop():
                    return None
            if self.data.device.type == "cuda":
                torch.cuda.synchronize(self.data.device)
            return total, beta, time.perf_counter() - start

    def _share(self, batch: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor | tuple, float]:
        """This rank's share of a global batch (``x``, or ``(x, y)``) and its loss's weight."""
        args = batch_args(batch)
        weight = self.shard.weight(args[0].shape[0])
        shares = tuple(self.shard.of(a) for a in args)
        return (shares if len(shares) > 1 else shares[0]), weight

    def _check(self, window: list[torch.Tensor], epoch: int, first: int) -> float:
        """Sum of the losses in ``window`` (steps ``first``, ``first + 1``, ...), emptied; one host sync.

        :raises Diverged: at the first loss that is not finite.
        """
        stacked = torch.stack(window) if window else None
        if stacked is not None and self.shard is not None:  # the mean of the weighted shares: the batch's loss
            stacked = mean_over_ranks(stacked)
        losses = stacked.tolist() if stacked is not None else []
        window.clear()
        for j, loss in enumerate(losses):
            if not math.isfinite(loss):
                raise Diverged(epoch=epoch, step=first + j, last_finite_loss=self.last_finite_loss)
            self.last_finite_loss = loss / self.num_data
        return math.fsum(losses)

    def _modules(self) -> dict[str, nn.Module]:
        """Model and guide, by role, where they are ``nn.Module`` s (their parameters are saved as state dicts)."""
        return {role: fn for role, fn in (("model", unwrapped(self.model)), ("guide", unwrapped(self.guide)))
                if isinstance(fn, nn.Module)}  # fmt: skip

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this trainer is.

        The parameters are ``modules`` (the ``state_dict`` of model and guide where they are
        ``nn.Module`` s, buffers included) and ``params``: the param store's other entries
        (a plain function's ``pyro.param`` s and ``pyro.module`` s), unconstrained, by name.
        """
        modules = self._modules()
        owned = {id(p) for m in modules.values() for p in m.parameters()}
        params = {n: p.detach().clone() for n, p in pyro.get_param_store().named_parameters() if id(p) not in owned}
        return {
            "history": list(self.history),
            "modules": {
                role: {k: v.detach().clone() for k, v in m.state_dict().items()} for role, m in modules.items()
            },
            "params": params,
            "optimizer": {"names": list(self.params), "state": self.optimizer.state_dict()},
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output, copying parameters in place.

        The optimizer's moments are restored; its learning rates are the ones this
        trainer's optimizer was built with (``config.lr`` for the default Adam), so
        that a run can continue with a lower one.
        """
        modules = self._modules()
        if set(state.get("modules", {})) - set(modules):
            raise ValueError(
                f"saved networks of {sorted(set(state['modules']) - set(modules))}, which are no modules here"
            )
        for role, saved in state.get("modules", {}).items():  # absent from checkpoints of format 2
            with torch.no_grad():
                modules[role].load_state_dict(saved)  # strict: every parameter and buffer in its place
        load_params(state["params"])
        if state["optimizer"]["names"] != list(self.params):
            raise ValueError("the saved optimizer state belongs to other parameters")
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"]["state"])
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self.history = list(state["history"])
        _set_rng_state(state["rng"])


class _Step(nn.Module):
    """Model and guide as one module whose forward is the step's loss, for DDP to wrap: its forward prepares
    the all-reduce of their gradients that the loss's backward then runs.

    :param modules: model and guide by role (their parameters are DDP's).
    :param loss: ``(args, beta) -> loss``, the trainer's.
    """

    def __init__(self, modules: dict[str, nn.Module], loss: Callable) -> None:
        super().__init__()
        self.programs = nn.ModuleDict(modules)
        self.loss = loss

    def forward(self, args: tuple[torch.Tensor, ...], beta: float) -> torch.Tensor:
        return self.loss(args, beta)


@contextmanager
def evaluating(*programs: Callable) -> Iterator[None]:
    """The ``nn.Module`` s among ``programs`` in eval mode inside (a relaxed categorical latent is then
    enumerated, a denoising autoencoder's input is not corrupted), their modes restored after."""
    modules = [fn for fn in map(unwrapped, programs) if isinstance(fn, nn.Module)]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def register_params(model: Callable, guide: Callable, *args: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
    """Run model and guide once on ``args`` (x, and y for a labelled model) so that every parameter
    is in the param store.

    Raises if an ``nn.Module``'s parameters are not the ones stored under its names,
    which happens when the store still holds an earlier model's parameters (also
    for a model or guide under :func:`~pyrovae.inference.handlers.bind_scales`).

    :returns: the param store's (unconstrained) parameters by name, sorted by name.
    """
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    params = dict(sorted(pyro.get_param_store().named_parameters()))
    stored = {id(p) for p in params.values()}
    for fn in map(unwrapped, (model, guide)):
        if isinstance(fn, nn.Module) and any(id(p) not in stored for p in fn.parameters()):
            raise RuntimeError(
                f"Pyro's param store holds stale parameters under the names {type(fn).__name__} "
                "uses; call pyro.clear_param_store() before building a new model"
            )
    return params


@torch.no_grad()
def baseline_sites(guide: Callable, *args: torch.Tensor) -> list[str]:
    """The guide's sample sites with a score-function baseline (``infer={"baseline": ...}``)."""
    return [site["name"] for site in sample_sites(poutine.trace(guide).get_trace(*args)) if "baseline" in site["infer"]]


@torch.no_grad()
def global_latents(model: Callable, guide: Callable, *args: torch.Tensor) -> list[str]:
    """The guide's latent sites outside the data plate (the plate at dim -1 of the model's observed sites)."""
    guide_trace = poutine.trace(guide).get_trace(*args)
    plate = data_plate_name(poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args))
    return [
        site["name"]
        for site in sample_sites(guide_trace)
        if not site["is_observed"] and getattr(plate_frame(site), "name", None) != plate
    ]


def _optimizer(factory: Callable | None, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """``factory(params)``, checked to be a torch optimizer; without a factory, :func:`_adam` at ``lr``."""
    if factory is None:
        return _adam(params, lr)
    optimizer = factory(params)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """One Adam over all parameters: the fused kernel where this torch has it, else the multi-tensor one."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr, foreach=True)


def params_finite() -> bool:
    """Whether every parameter in Pyro's param store is finite (one host sync)."""
    checks = [torch.isfinite(p).all() for _, p in pyro.get_param_store().named_parameters()]
    return bool(torch.stack(checks).all()) if checks else True


def load_params(params: dict[str, torch.Tensor]) -> None:
    """Copy saved (unconstrained) parameter values into the param store, in place."""
    live = dict(pyro.get_param_store().named_parameters())
    unknown = sorted(set(params) - set(live))
    if unknown:
        raise ValueError(f"saved parameters {unknown} do not exist in this model")
    for name, value in params.items():
        if value.shape != live[name].shape:  # copy_ would broadcast a smaller tensor silently
            raise ValueError(
                f"saved parameter {name} has shape {tuple(value.shape)}, the model's {tuple(live[name].shape)}"
            )
    with torch.no_grad():
        for name, value in params.items():
            live[name].copy_(value)


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


def _collapse_message(row: dict) -> str | None:
    """:func:`collapse_message` of an epoch's row, with the whole latent's KL from the
    analytic per-dimension KL (exact, test split) or, for latent sites without one,
    the Monte-Carlo ``kl`` (training split). Rows of checkpoints written before
    active units were recorded count as not collapsed.
    """
    if "active_units" not in row:
        return None
    kl = sum(map(sum, row["kl_per_dim"].values())) if row["kl_per_dim"] else row["kl"]
    return collapse_message(row["active_units"], kl)


def _rng_state() -> dict:
    """Pyro's RNG states (torch, Python's random, numpy) as tensors and plain values, for a weights-only load."""
    state = pyro.util.get_rng_state()
    name, key, *rest = state["numpy"]  # key: numpy's uint32 array, held as int64 (torch has no uint32 ops)
    state["numpy"] = (name, torch.from_numpy(key.astype(np.int64)), *rest)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    name, key, *rest = state["numpy"]
    pyro.util.set_rng_state({**state, "numpy": (name, np.asarray(key, dtype=np.int64).astype(np.uint32), *rest)})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
