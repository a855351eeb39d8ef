"""The parameters of a training run: registered in Pyro's param store, stepped by one Adam, checked, saved
and restored with the RNG states, and the programs' train/eval modes.

References: D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pyro
import pyro.util
import torch
from pyro import poutine
from torch import nn

from pyrovae.inference.handlers import unwrapped
from pyrovae.inference.log_weights import data_plate_name, plate_frame, sample_sites


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
        if isinstance(fn, nn.Module) and any(id(p) not in stored for p in fn.parameters() if p.requires_grad):
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


def make_optimizer(factory: Callable | None, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
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


def rng_state() -> dict:
    """Pyro's RNG states (torch, Python's random, numpy) as tensors and plain values, for a weights-only load."""
    state = pyro.util.get_rng_state()
    name, key, *rest = state["numpy"]  # key: numpy's uint32 array, held as int64 (torch has no uint32 ops)
    state["numpy"] = (name, torch.from_numpy(key.astype(np.int64)), *rest)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    name, key, *rest = state["numpy"]
    pyro.util.set_rng_state({**state, "numpy": (name, np.asarray(key, dtype=np.int64).astype(np.uint32), *rest)})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
