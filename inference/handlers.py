"""Effect handlers that give any Pyro model pyrovae's objective weights from outside.

A plain Pyro model ``model(x)`` and guide ``guide(x)``, with their per-datapoint
sites in ``pyro.plate("data", x.shape[0], dim=-1)``, know nothing of beta or of
the data-set size N. Run under :func:`with_scales`, their traces are the ones
pyrovae's own models give with :func:`pyrovae.primitives.data_plate` and
:func:`pyrovae.primitives.kl_scale`:

- :class:`BetaScale`: every latent (non-observed) sample site, in model and guide,
  is scaled by beta (``poutine.scale``), or masked out at beta = 0 (``poutine.mask``),
  so that ``Trace_ELBO`` optimizes E_q[log p(x | z)] - beta KL(q || p);
- :class:`DataSubsample`: the data plate becomes a subsample of B out of N: its frame
  in every site's ``cond_indep_stack`` gets ``full_size = N`` and the site's scale is
  multiplied by N / B, as a subsampled ``pyro.plate`` does. Sites outside the data
  plate (global latents) are left as they are.

So the per-datapoint bounds (:mod:`.log_weights`, IWAE, Renyi) read N / B from the
frames and beta from the site scales exactly as for pyrovae's models.
:func:`takes_scales` tells which route a model or guide needs, and :func:`bind_scales`
takes it.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (minibatch
scaling N / B); I. Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", ICLR 2017.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyrovae.inference.log_weights import PARTICLE_PLATE

DATA_PLATE = "data"  # the name of the data plate, as pyrovae.primitives.data_plate names it
SCALE_KEYWORDS = ("beta", "num_data")
_PARTICLE_PLATES = (PARTICLE_PLATE, "num_particles_vectorized")  # ours and Pyro's ELBO's


class BetaScale(Messenger):
    """Scale every latent sample site by ``beta``; mask it out at ``beta == 0`` (:func:`~pyrovae.primitives.kl_scale`).

    Observed sites (x, ``pyro.factor``) and the plates' subsample sites are left alone.
    """

    def __init__(self, beta: float | torch.Tensor) -> None:
        if not isinstance(beta, torch.Tensor) and beta < 0:  # a tensor: a traced step's, checked before
            raise ValueError(f"beta must be >= 0, got {beta}")
        super().__init__()
        self.beta = beta

    def _pyro_sample(self, msg: dict) -> None:
        constant = not isinstance(self.beta, torch.Tensor)
        if msg["is_observed"] or site_is_subsample(msg) or (constant and self.beta == 1):
            return
        if constant and self.beta == 0:  # Pyro rejects a scale of 0: remove the site from the objective exactly
            msg["mask"] = False if msg["mask"] is None else msg["mask"] & False
        else:
            msg["scale"] = self.beta * msg["scale"]


class DataSubsample(Messenger):
    """Make the plate ``plate`` at dim -1 a subsample of its B datapoints out of ``num_data``.

    Does to each site inside the plate what ``pyro.plate(plate, num_data, subsample=...)``
    would: the frame's ``full_size`` becomes N and the site's scale is multiplied by
    N / B. Sites outside the plate (global latents) get neither. ``num_data=None``
    changes nothing.

    :raises ValueError: when the plate is already a subsample, when N < B, or, at the
        program's end, when no site sat in the plate although the program observed a
        site or used another plate at dim -1 (a data plate under another name would
        otherwise silently miss its N / B).
    """

    def __init__(self, num_data: int | None, *, plate: str = DATA_PLATE) -> None:
        super().__init__()
        self.num_data, self.plate = num_data, plate
        self._inside, self._outside = False, set()  # seen a site in the plate; other plates at dim -1, observed sites

    def __enter__(self) -> DataSubsample:
        self._inside, self._outside = False, set()
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None and self.num_data is not None and not self._inside and self._outside:
            raise ValueError(
                f"no sample site is in a plate named {self.plate!r} at dim -1, but {', '.join(sorted(self._outside))} "
                f"are outside it: put the per-datapoint sites in pyro.plate({self.plate!r}, x.shape[0], dim=-1)"
            )

    def _pyro_sample(self, msg: dict) -> None:
        if self.num_data is None or site_is_subsample(msg):
            return
        stack = msg["cond_indep_stack"]
        index = next((i for i, f in enumerate(stack) if f.dim == -1 and f.name == self.plate), None)
        if index is None:  # a global site: no N / B
            other = [f.name for f in stack if f.dim == -1 and f.name not in _PARTICLE_PLATES]
            self._outside.update(f"plate {name!r}" for name in other)
            if msg["is_observed"] and not other:
                self._outside.add(f"observed site {msg['name']!r}")
            return
        frame = stack[index]
        if frame.full_size not in (None, frame.size):
            raise ValueError(f"plate {self.plate!r} is already a subsample ({frame.size} of {frame.full_size})")
        if self.num_data < frame.size:
            raise ValueError(f"num_data={self.num_data} is smaller than the batch ({frame.size} rows)")
        self._inside = True
        msg["cond_indep_stack"] = (*stack[:index], frame._replace(full_size=self.num_data), *stack[index + 1 :])
        msg["scale"] = msg["scale"] * self.num_data / frame.size  # as pyro.plate does: (scale * N) / B


def with_scales(fn: Callable, *, beta: float = 1.0, num_data: int | None = None, plate: str = DATA_PLATE) -> Callable:
    """``fn`` (a plain Pyro model or guide) run with beta on its latent sites and the data plate a subsample of N.

    The beta scale is applied first and N / B after it, so that every site scale is
    the same float ``(beta * N) / B`` that ``data_plate(B, N)`` around ``kl_scale(beta)`` gives.
    """

    def scaled(*args, **kwargs):
        with DataSubsample(num_data, plate=plate), BetaScale(beta):  # the inner handler (beta) runs first
            return fn(*args, **kwargs)

    scaled.__wrapped__ = fn  # for unwrapped (functools.wraps would copy an nn.Module's __dict__)
    return scaled


def takes_scales(fn: Callable) -> bool:
    """Whether ``fn`` (a function or an ``nn.Module``, by its ``forward``) names both ``beta`` and ``num_data``.

    Such a model or guide (pyrovae's own) applies beta and N / B itself; any other is
    run under :func:`with_scales`. A ``**kwargs`` catch-all does not count: it would
    receive the keywords and may ignore them.

    :raises TypeError: when ``fn`` names one of the two but not the other.
    """
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: a plain program
        return False
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [p.name for p in parameters if p.kind in kinds and p.name in SCALE_KEYWORDS]
    if len(named) == 1:
        raise TypeError(
            f"{getattr(target, '__qualname__', target)!r} takes {named[0]!r} but not the other of "
            f"{' and '.join(SCALE_KEYWORDS)}: take both (and apply them) or neither (pyrovae applies them)"
        )
    return len(named) == 2


def bind_scales(fn: Callable, *, beta: float, num_data: int | None, takes: bool | None = None) -> Callable:
    """``fn`` with beta and N bound: passed as keywords if it :func:`takes_scales`, else by :func:`with_scales`.

    :param takes: :func:`takes_scales` of ``fn``, when the caller has it already.
    """
    if takes_scales(fn) if takes is None else takes:
        return functools.partial(fn, beta=beta, num_data=num_data)
    return with_scales(fn, beta=beta, num_data=num_data)


def unwrapped(fn: Callable) -> Callable:
    """The model or guide under :func:`bind_scales`' wrappers (``functools.partial``, :func:`with_scales`)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.unwrap(fn)


class ParticleBroadcastError(ValueError):
    """A model or guide that runs alone fails under vectorized particles: it does not broadcast over them."""


def particle_error(
    error: Exception, model: Callable, guide: Callable, *args, num_particles: int, dim: int, **kwargs
) -> Exception:
    """The error to raise for ``error``, which an objective raised running ``model`` and ``guide``
    with ``num_particles`` particles vectorized at ``dim``.

    When both programs fail under a plate of ``num_particles`` at ``dim`` but run on
    ``args`` without it, the failure came from the particle dimension: a
    :class:`ParticleBroadcastError` that names the requirement. Otherwise ``error``
    itself (the programs fail anyway, or the failure lies elsewhere).
    """

    def runs(particles: int | None) -> bool:
        def under_plate(fn: Callable) -> Callable:
            return fn if particles is None else pyro.plate(PARTICLE_PLATE, particles, dim=dim)(fn)

        try:
            with torch.no_grad():
                guide_trace = poutine.trace(under_plate(guide)).get_trace(*args, **kwargs)
                poutine.trace(poutine.replay(under_plate(model), trace=guide_trace)).get_trace(*args, **kwargs)
        except Exception:
            return False
        return True

    if runs(num_particles) or not runs(None):
        return error
    return ParticleBroadcastError(
        f"the model or guide fails with {num_particles} vectorized particles but runs without them: with more "
        f"than one particle, a model and guide must broadcast over a leading particle dimension at dim {dim} "
        "(batch dimensions counted from the right: use x.shape[0] only as the plate size and reshape with "
        "z.shape[:-1], never z.view(x.shape[0], -1)); "
        f"{type(error).__name__}: {error}"
    )
