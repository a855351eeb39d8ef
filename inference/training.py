"""The SVI training loop: epochs over a device-resident data set, the true ELBO per epoch.

One step is Pyro's ``SVI.step`` (differentiate the objective's surrogate loss,
optionally clip the gradient norm, step the optimizer over the param store) with
two differences. The parameters are collected once, when the trainer is built,
and stepped by one (fused where available) Adam instead of Pyro's one optimizer
per parameter; gradients are dropped rather than zero-filled. And the loss stays
a tensor: neither the objectives (:mod:`.trace_elbo`, :mod:`.iwae`, :mod:`.renyi`)
nor the loop move a number to the host during an epoch, except every
``log_every`` steps, when the progress bar is refreshed and the losses since
the last refresh are checked for NaN and infinity. With ``TrainConfig.compile`` the
step's loss and gradients come from one traced and compiled graph (:mod:`.compiled`).

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
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pyro
import torch
from pyro import poutine
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from pyrovae.data import Dataset
from pyrovae.distributed import Shard, from_rank_0, mean_over_ranks
from pyrovae.errors import InputError, is_out_of_memory
from pyrovae.formats import DataError
from pyrovae.inference.annealing import parse_schedule
from pyrovae.inference.compiled import CompileFallbackWarning, Step, StepGraph, average_gradients, untraceable
from pyrovae.inference.diagnostics import (
    PosteriorCollapseWarning,
    active_units,
    collapse_message,
    kl_per_dim,
    stochastic_latents,
)
from pyrovae.inference.evaluation import evaluate_elbo
from pyrovae.inference.handlers import bind_scales, particle_error, takes_scales, unwrapped
from pyrovae.inference.log_weights import enumerated_sites
from pyrovae.inference.lr_schedule import parse_lr_schedule
from pyrovae.inference.objectives import AuxiliaryLoss, as_objective, check_auxiliary, vectorized_particles
from pyrovae.inference.parameters import (
    baseline_sites,
    evaluating,
    global_latents,
    load_params,
    make_optimizer,
    params_finite,
    register_params,
    rng_state,
    set_rng_state,
)
from pyrovae.inference.train_config import Diverged, TrainConfig, best_epoch, heldout_elbo
from pyrovae.primitives import batch_args


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
        self.optimizer = make_optimizer(optimizer, list(self.params.values()), config.lr)
        self._ddp = None if shard is None else self._data_parallel()
        self.compiled = self._step_graph() if config.compile else None  # None: every step runs Pyro eagerly
        self.schedule = parse_schedule(config.kl_anneal, config.beta)
        self.lr_factor = parse_lr_schedule(config.lr_schedule)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]  # what lr_schedule scales
        self.steps_per_epoch = math.ceil(self.num_data / config.batch_size)
        self.history: list[dict[str, float]] = []
        self.global_step = 0  # the step in progress (0-based, over the whole run), for step-dependent objectives
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
        loose = self._loose_params()
        if loose:
            raise InputError(
                f"data-parallel training keeps nn.Module parameters in step, and {loose[:3]} are pyro.params of "
                "plain functions; make model and guide nn.Modules (PyroModule) or train in one process"
            )
        # static: the same parameters take part in every step (an unused one, e.g. a baseline, is allowed)
        return DistributedDataParallel(Step(self._modules(), self._loss), static_graph=True)

    def _loose_params(self) -> list[str]:
        """The names of the trained parameters outside model's and guide's ``nn.Module`` s (a plain function's
        ``pyro.param`` s), which neither DDP nor the compiled step can reach."""
        owned = {id(p) for m in self._modules().values() for p in m.parameters()}
        return sorted(name for name, p in self.params.items() if id(p) not in owned)

    def _step_graph(self) -> StepGraph | None:
        """The compiled step (:class:`~pyrovae.inference.compiled.StepGraph`); ``None``, after one
        :class:`~pyrovae.inference.compiled.CompileFallbackWarning`, where a parameter is outside the modules."""
        loose = self._loose_params()
        why = untraceable(self.objective)
        if loose:
            why = f"it traces nn.Module parameters, and {loose[:3]} are pyro.params of plain functions"
        if why is not None:
            warnings.warn(f"--compile: {why}; training uncompiled", CompileFallbackWarning, stacklevel=3)
            return None
        return StepGraph(Step(self._modules(), self._loss))

    def step(self, x: torch.Tensor | tuple[torch.Tensor, ...], beta: float, *, weight: float = 1.0) -> torch.Tensor:
        """One SVI step on minibatch ``x`` (or ``(x, y)``); returns the loss, auxiliary terms included (detached).

        :param weight: a factor on the loss: a rank's share of a data-parallel batch (:class:`Shard.weight`).
        :raises ParticleBroadcastError: when model or guide run alone but not under the
            objective's vectorized particles (a :class:`ValueError` naming the requirement).
        """
        args = batch_args(x)
        traced = None if self.compiled is None else self.compiled(args, beta)  # None: not compiled
        if traced is None:
            loss, aux = self._loss(args, beta) if self._ddp is None else self._ddp(args, beta)
            loss = weight * loss
            loss.backward()
        else:
            loss, grads, aux = traced
            if weight != 1.0:
                loss, grads = weight * loss, [None if g is None else weight * g for g in grads]
            if self.shard is not None:  # DDP's mean over the ranks, in one all-reduce
                grads = average_gradients(grads, mean_over_ranks)
            for p, g in zip(self.compiled.parameters, grads, strict=True):
                p.grad = g
        for term, value in zip(self.aux, aux, strict=True):  # each term's epoch sum, scaled to N (no sync)
            self._aux_sums[term.name] = self._aux_sums.get(term.name, 0.0) + value
        if self.config.clip_norm is not None:  # the loss is N x the per-datapoint mean: scale the bound alike
            torch.nn.utils.clip_grad_norm_(self.params.values(), self.config.clip_norm * self.num_data)  # no sync
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _loss(
        self, args: tuple[torch.Tensor, ...], beta: float | torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The objective's differentiable loss on ``args``, auxiliary terms included, and those terms unweighted
        (each scaled to N, detached)."""
        model, guide = self._programs(beta)
        objective = self.objective  # a step-dependent one (the capacity objective's target) at this step
        objective = objective.at_step(self.global_step) if hasattr(objective, "at_step") else objective
        try:
            loss = objective.differentiable_loss(model, guide, *args)
        except (RuntimeError, ValueError) as e:
            if is_out_of_memory(e):  # not a shape error: the command line names what to make smaller
                raise
            k, dim = vectorized_particles(self.objective)
            explained = e if k == 1 else particle_error(e, model, guide, *args, num_particles=k, dim=dim)
            if explained is e:  # not the particle dimension's fault
                raise
            raise explained from e
        values = [term.fn(self.model, self.guide, *args) * (self.num_data / args[0].shape[0]) for term in self.aux]
        for term, value in zip(self.aux, values, strict=True):  # sum_j weight_j (N / B) fn_j(model, guide, *args)
            loss = loss + term.weight * value
        return loss, tuple(value.detach() for value in values)

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
                self.global_step = first_step + i
                beta = self.schedule(self.global_step)
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
            "rng": rng_state(),
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
        set_rng_state(state["rng"])


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
