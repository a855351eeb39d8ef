"""The SVI training loop: epochs over a device-resident data set, the true ELBO per epoch.

One step is Pyro's ``SVI.step`` (trace the parameters, differentiate the
objective's surrogate loss, step the optimizer over the param store) except that
the loss stays a tensor: the loop itself never moves a number to the host during
an epoch, except every ``log_every`` steps for the progress bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.optim
import pyro.util
import torch
from pyro import poutine
from pyro.infer.util import zero_grads
from torch import nn
from tqdm.auto import tqdm

from pyrovae.data import Dataset, batch_args
from pyrovae.inference.annealing import parse_schedule
from pyrovae.inference.evaluation import evaluate_elbo
from pyrovae.inference.log_weights import elbo_terms
from pyrovae.inference.objectives import make_objective

METRICS = ("epoch", "train_elbo", "test_elbo", "reconstruction", "kl", "beta", "train_loss", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all of them go into ``config.json``)."""

    epochs: int = 50  # passes over the training split (50 x 4,500 mnist-5k digits: ~30 s on 2 cores)
    batch_size: int = 100  # datapoints per SVI step
    lr: float = 1e-3  # Adam learning rate
    objective: str = "elbo"  # a name in pyrovae.inference.objectives.OBJECTIVES
    particles: int = 1  # samples of z per datapoint, vectorized (k of iwae and renyi)
    iwae_gradient: str = "standard"  # standard | dreg: the IWAE gradient estimator
    alpha: float = 0.5  # order of the Renyi bound (objective renyi)
    beta: float = 1.0  # KL weight reached by the annealing schedule (beta-VAE)
    kl_anneal: str = "constant"  # constant | linear:STEPS | cyclical:PERIOD[:RATIO]
    seed: int = 0  # seeds the per-epoch shuffle and binarization
    eval_batch_size: int = 1000  # chunk size of the per-epoch ELBO evaluation
    log_every: int = 50  # steps between progress-bar refreshes (the only host syncs)


class Trainer:
    """Train ``model``/``guide`` (called as ``fn(x, *, beta, num_data)``, or
    ``fn(x, y, *, beta, num_data)`` with ``labels=True``) on ``data``.

    Every epoch appends a row to :attr:`history` with, in nats per datapoint,
    ``train_elbo`` and ``test_elbo`` (the true ELBO at beta = 1, on fixed
    binarizations of the splits), ``reconstruction`` and ``kl`` (the two terms of
    ``train_elbo``), the ``beta`` in force at the epoch's end, ``train_loss`` (the
    mean training objective, beta-weighted) and ``seconds`` (training steps only).

    Parameters live in Pyro's param store; clear it before building a new model.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        data: Dataset,
        config: TrainConfig,
        *,
        progress: bool = True,
        labels: bool = False,
    ):
        self.model, self.guide, self.data, self.config = model, guide, data, config
        self.progress, self.labels = progress, labels
        self.objective = make_objective(
            config.objective, num_particles=config.particles, iwae_gradient=config.iwae_gradient, alpha=config.alpha
        )
        self.optimizer = pyro.optim.Adam({"lr": config.lr})
        self.schedule = parse_schedule(config.kl_anneal, config.beta)
        self.num_data = data.split("train").shape[0]
        self.steps_per_epoch = math.ceil(self.num_data / config.batch_size)
        self.history: list[dict[str, float]] = []
        register_params(model, guide, *batch_args(next(data.eval_batches("train", 2, labels=labels))))

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return len(self.history)

    def step(self, x: torch.Tensor | tuple[torch.Tensor, ...], beta: float) -> torch.Tensor:
        """One SVI step on minibatch ``x`` (or ``(x, y)``); returns the loss (a detached tensor)."""
        with poutine.trace(param_only=True) as capture:
            loss = self.objective.differentiable_loss(
                self.model, self.guide, *batch_args(x), beta=beta, num_data=self.num_data
            )
        loss.backward()
        params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
        self.optimizer(params)
        zero_grads(params)
        return loss.detach()

    def train_epoch(self) -> dict[str, float]:
        """Run one epoch, evaluate, append the epoch's metrics to :attr:`history` and return them."""
        cfg, epoch = self.config, self.epoch + 1
        seed = int(np.random.SeedSequence([cfg.seed, epoch]).generate_state(1)[0])
        generator = torch.Generator(device=self.data.device).manual_seed(seed)
        first_step = (epoch - 1) * self.steps_per_epoch
        total = torch.zeros((), device=self.data.device)
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}",
            unit="step",
            leave=False,
            disable=None if self.progress else True,  # None: off when not a terminal
        )
        start = time.perf_counter()
        for i, x in enumerate(self.data.train_batches(cfg.batch_size, generator, labels=self.labels)):
            beta = self.schedule(first_step + i)
            total += self.step(x, beta)
            bar.update()
            if (i + 1) % cfg.log_every == 0:
                bar.set_postfix(loss=f"{float(total) / ((i + 1) * self.num_data):.3f}")
        if self.data.device.type == "cuda":
            torch.cuda.synchronize(self.data.device)
        seconds = time.perf_counter() - start
        bar.close()
        train, test = (
            evaluate_elbo(
                self.model, self.guide, self.data.eval_batches(split, cfg.eval_batch_size, labels=self.labels)
            )
            for split in ("train", "test")
        )
        row = {
            "epoch": epoch,
            "train_elbo": train["elbo"],
            "test_elbo": test["elbo"],
            "reconstruction": train["reconstruction"],
            "kl": train["kl"],
            "beta": beta,
            "train_loss": float(total) / (self.steps_per_epoch * self.num_data),
            "seconds": seconds,
        }
        self.history.append(row)
        return row

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this trainer is."""
        return {
            "history": list(self.history),
            "params": {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()},
            "optimizer": self.optimizer.get_state(),
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output, copying parameters in place."""
        load_params(state["params"])
        self.optimizer.set_state(state["optimizer"])
        self.history = list(state["history"])
        _set_rng_state(state["rng"])


def register_params(model: Callable, guide: Callable, *args: torch.Tensor, **kwargs) -> None:
    """Run model and guide once on ``args`` (x, and y for a labelled model) so that every parameter
    is in the param store.

    Raises if an ``nn.Module``'s parameters are not the ones stored under its names,
    which happens when the store still holds an earlier model's parameters.
    """
    with torch.no_grad():
        elbo_terms(model, guide, *args, **kwargs)
    stored = {id(p) for _, p in pyro.get_param_store().named_parameters()}
    for fn in (model, guide):
        if isinstance(fn, nn.Module) and any(id(p) not in stored for p in fn.parameters()):
            raise RuntimeError(
                f"Pyro's param store holds stale parameters under the names {type(fn).__name__} "
                "uses; call pyro.clear_param_store() before building a new model"
            )


def load_params(params: dict[str, torch.Tensor]) -> None:
    """Copy saved (unconstrained) parameter values into the param store, in place."""
    live = dict(pyro.get_param_store().named_parameters())
    unknown = sorted(set(params) - set(live))
    if unknown:
        raise ValueError(f"saved parameters {unknown} do not exist in this model")
    with torch.no_grad():
        for name, value in params.items():
            live[name].copy_(value)


def _rng_state() -> dict:
    state = pyro.util.get_rng_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    pyro.util.set_rng_state(state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
