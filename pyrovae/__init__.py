"""pyrovae: variational autoencoders as Pyro probabilistic programs.

Generative models live in :mod:`pyrovae.models`, amortized guides in
:mod:`pyrovae.guides`, objectives, bounds and the training loop in
:mod:`pyrovae.inference`. This top-level module stays import-light so that the
``pyrovae`` command starts quickly; :func:`load` reads a trained run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyrovae.store import LoadedRun

__version__ = "0.1.0"


def load(
    run_dir: str | Path, device: str = "cpu", *, model_file: str | None = None, checkpoint: str = "best"
) -> LoadedRun:
    """A trained run from its directory: ``.model`` and ``.guide`` (plain Pyro callables, parameters
    loaded), ``.config``, ``.spec``, ``.networks`` by name and ``.image_shape``.

    Reads the run without running code from it (see the README's threat model) and leaves Pyro's
    param store as it is: :func:`pyrovae.store.load_run`. A run trained from a hand-written model
    needs ``model_file`` (``FILE.py:FACTORY``), the very file it was trained from. ``checkpoint="best"``
    is the best epoch of a run trained with early stopping (and the last epoch of any other);
    ``"last"`` the last completed epoch.
    """
    from pyrovae.store import load_run

    return load_run(run_dir, device, model_file=model_file, checkpoint=checkpoint)
