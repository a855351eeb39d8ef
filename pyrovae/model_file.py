"""Hand-written Pyro models from a Python file: ``pyrovae train --model-file FILE.py:FACTORY``.

``FACTORY`` is a callable in ``FILE.py`` that returns the model and the guide: a pair
``(model, guide)`` of callables, or an object with ``model`` and ``guide`` methods (an
``nn.Module`` such as Pyro's ``examples/vae/vae.py`` ``VAE``). It is called without
arguments, or with ``data_dim`` (the size of a flattened datapoint) and ``image_shape``
(``(C, H, W)``) for those of the two its signature names. Model and guide are called as
``fn(x)``, ``x`` of shape ``(batch, data_dim)``, with their per-datapoint sites in a plate
at dim -1 (named ``"data"`` to get N / B from outside; :mod:`pyrovae.inference.handlers`).

Running code is what a model file is for, so pyrovae runs it only when the command line (or
the caller of :func:`pyrovae.load`) names it: a run directory stores the file's absolute
path, its factory and a digest of its bytes, never the code, and ``evaluate``, ``sample``,
``plot`` and ``train --resume`` of such a run need ``--model-file`` again; a file whose bytes
differ from the trained one's is refused (its parameters may not fit, and it is not the
model that was trained).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from pyro import poutine
from torch import nn

from pyrovae.errors import InputError
from pyrovae.inference.diagnostics import stochastic_latents


class ModelFileError(InputError):
    """A model file cannot be read, has no such factory, or is not the run's; the message names the fix."""


def parse_ref(ref: str) -> tuple[Path, str]:
    """``FILE.py:FACTORY`` as the file's absolute path and the factory's name.

    :raises ModelFileError: no ``:FACTORY``, a name that is not an identifier, or no such file.
    """
    path, sep, factory = str(ref).rpartition(":")
    if not sep or not path or not factory.isidentifier():
        raise ModelFileError(
            f"--model-file {ref}: expected FILE.py:FACTORY, e.g. my_vae.py:make_vae (FACTORY returns model and "
            "guide, or an object with model and guide methods)"
        )
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ModelFileError(f"--model-file {ref}: no such file {file}")
    return file, factory


def digest(path: Path) -> str:
    """A fingerprint of the file's bytes (blake2b, 16 bytes, hex)."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def check_same(ref: str | None, stored: str, stored_digest: str, run_dir: Path) -> tuple[Path, str]:
    """The model file given again for a run trained from ``stored`` (``ABS/FILE.py:FACTORY``), checked.

    :raises ModelFileError: no file given (pyrovae never runs code named by a run directory), another
        factory, or bytes other than the trained file's.
    """
    if ref is None:
        raise ModelFileError(
            f"{run_dir} was trained from the model file {stored}; pyrovae runs no code that a run directory names, "
            f"so give it yourself: --model-file {stored} (pyrovae.load(..., model_file=...) in Python)"
        )
    path, factory = parse_ref(ref)
    if factory != stored.rpartition(":")[2]:
        raise ModelFileError(f"--model-file {ref}: {run_dir} was trained with the factory of {stored}")
    if digest(path) != stored_digest:
        raise ModelFileError(
            f"--model-file {ref}: {path} is not the file {run_dir} was trained from (its contents differ from "
            f"those of {stored} at training time); restore that version, or train a new run from this one"
        )
    return path, factory


def load_programs(path: Path, factory: str, *, data_dim: int, image_shape: tuple[int, ...]) -> tuple[Program, Program]:
    """Import ``path``, call its ``factory`` and wrap what it returns as :class:`Program` model and guide.

    :raises ModelFileError: an import that fails, no such factory, or a result that is not model and guide.
    """
    name = f"pyrovae_model_file_{digest(path)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelFileError(f"--model-file {path}: not an importable Python file; give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up there
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ModelFileError(f"--model-file {path}: importing it failed: {type(e).__name__}: {e}") from None
    make = getattr(module, factory, None)
    if not callable(make):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))[:8]
        raise ModelFileError(f"--model-file {path}:{factory}: no callable {factory!r} there (it has {found})")
    wanted = inspect.signature(make).parameters
    made = make(**{k: v for k, v in {"data_dim": data_dim, "image_shape": image_shape}.items() if k in wanted})
    model, guide, owner = _model_and_guide(made, f"{path}:{factory}")
    programs = Program(model, owner, data_dim), Program(guide, owner, data_dim)
    with pyro.get_param_store().scope():  # the probe's pyro.module / pyro.param calls leave the store as it was
        programs[0].probabilistic = bool(stochastic_latents(guide, torch.zeros(2, data_dim)))
    return programs


def _model_and_guide(made: object, where: str) -> tuple[Callable, Callable, nn.Module | None]:
    """``(model, guide, owner)`` from a factory's result; ``owner`` the module both are methods of, if any."""
    if isinstance(made, tuple | list) and len(made) == 2 and all(map(callable, made)):
        model, guide = made
        return model, guide, None
    model, guide = getattr(made, "model", None), getattr(made, "guide", None)
    if callable(model) and callable(guide):
        return model, guide, made if isinstance(made, nn.Module) else None
    raise ModelFileError(
        f"--model-file {where}: returned {type(made).__name__}; a factory returns (model, guide) or an object "
        "with model and guide methods"
    )


class Program(nn.Module):
    """A hand-written model or guide ``fn(x)`` with pyrovae's conventions: ``program(x)``, and
    ``program(None, batch_size=n)`` for the model's prior predictive.

    With ``x`` None, a batch of zeros stands in for x and every observed site is sampled instead
    (``poutine.uncondition``): the site holds a draw of p(x | z) with z from the prior. ``owner``
    (the module whose methods model and guide are, if one) is a submodule, so that ``.to(device)``
    and ``state_dict`` reach its networks.
    """

    probabilistic = True  # False when every latent of the guide is a point mass (set by load_programs)

    def __init__(self, fn: Callable, owner: nn.Module | None, data_dim: int) -> None:
        super().__init__()
        self.fn, self.data_dim = fn, data_dim
        self.owner = owner
        self.register_buffer("device_marker", torch.zeros(0), persistent=False)  # follows .to(device)

    @property
    def inputs(self) -> dict[str, int]:
        """No label inputs: a hand-written model reads x alone."""
        return {}

    @property
    def labels(self) -> dict[str, int]:
        """No class labels besides x."""
        return {}

    observed = labels  # no observed labels
    partial = labels  # no partially observed latents
    discrete = labels  # no categorical latents

    @property
    def conditionals(self) -> dict[str, nn.Module]:
        """The owner's networks by name (e.g. ``encoder``, ``decoder``); none for plain functions."""
        return dict(self.owner.named_children()) if self.owner is not None else {}

    def forward(self, x: torch.Tensor | None = None, *, batch_size: int | None = None) -> object:
        if x is not None:
            return self.fn(x)
        if batch_size is None:
            raise ValueError("give x, or batch_size for the prior predictive")
        return poutine.uncondition(self.fn)(self.device_marker.new_zeros(batch_size, self.data_dim))
