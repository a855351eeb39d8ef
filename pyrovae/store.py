"""The run directory: its files, their atomic writes, its lock, and a trained run loaded back.

``RUN_DIR`` holds ``config.json`` (every setting), ``checkpoint.pt`` (written
atomically after every epoch), ``best.pt`` (with early stopping: the epoch of the
highest validation ELBO), ``metrics.csv`` and ``kl_per_dim.csv`` (one row per
completed epoch, rewritten from the checkpoint's history so they never hold an
epoch twice), ``samples.png``, ``reconstructions.png`` and, after each epoch N of
``snapshot_epochs``, ``reconstructions_eN.png`` and ``samples_eN.png``;
``.pyrovae.lock`` is the lock of :mod:`pyrovae.lock`.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from torch import nn

from pyrovae import spec
from pyrovae.checkpoint import BEST, CHECKPOINT, atomic_write_text, fits, load_checkpoint
from pyrovae.data import Dataset, load_dataset
from pyrovae.errors import (
    InputError,
)
from pyrovae.inference.parameters import load_params, register_params
from pyrovae.inference.train_config import METRICS
from pyrovae.lock import LOCK, run_lock
from pyrovae.run_config import RunConfig, build_model, model_spec, resolve_device

RUN_FILES = (
    "config.json",
    CHECKPOINT,
    BEST,
    "metrics.csv",
    "kl_per_dim.csv",
    "bounds.csv",
    "samples.png",
    "reconstructions.png",
)


SNAPSHOT_FILES = ("reconstructions_e*.png", "samples_e*.png")


class RunError(RuntimeError):
    """Training stopped on a fault (NaN, failed write); the last checkpoint is intact."""


@contextmanager
def open_run_dir(out: Path, *, resume: bool, force: bool) -> Iterator[None]:
    """Create (new run), lock, and clear what a new run or a cut-short write left in ``out``.

    A new run's directory is created exclusively, so that of two processes starting
    it at once one is refused; ``force`` clears only a directory that is a pyrovae run.
    """
    if not (resume or force):
        try:
            out.mkdir(parents=True)
        except FileExistsError:
            raise InputError(f"{out} already exists; pass --resume to continue it or --force to start over") from None
    elif force:
        out.mkdir(parents=True, exist_ok=True)
    with run_lock(out, "train"):
        for pattern in (*RUN_FILES, *SNAPSHOT_FILES):  # temporary files of writes cut short
            for tmp in out.glob(f".{pattern}.*.tmp"):
                tmp.unlink()
        if force:
            check_is_run_dir(out)
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
            for path in (p for pattern in SNAPSHOT_FILES for p in out.glob(pattern)):
                path.unlink()
        yield


def check_is_run_dir(out: Path) -> None:
    """``out`` is empty or a pyrovae run (``config.json``, ``checkpoint.pt`` or the lock are in it), so that
    ``--force`` deletes nothing of anyone else's.

    :raises InputError: naming what is there.
    """
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if names and not {"config.json", CHECKPOINT, LOCK} & set(names):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(
            f"--force: {out} is not a pyrovae run directory (no config.json or {CHECKPOINT}; it holds {shown}), "
            "and --force would overwrite files in it; give a new --out"
        )


def epochs_shown(out: Path) -> list[str]:
    """The files of ``out`` that only a completed epoch writes: ``metrics.csv`` or ``kl_per_dim.csv`` with a row,
    snapshots, final figures, ``bounds.csv``."""
    shown = [name for name in ("metrics.csv", "kl_per_dim.csv") if _has_rows(out / name)]
    figures = [p.name for pattern in (*SNAPSHOT_FILES, "samples.png", "reconstructions.png") for p in out.glob(pattern)]
    return shown + sorted(figures) + (["bounds.csv"] if (out / "bounds.csv").exists() else [])


def _has_rows(path: Path) -> bool:
    """Whether the CSV file ``path`` exists with a row below its header (an unreadable one counts)."""
    try:
        with open(path, "rb") as f:
            return len(f.read(1 << 16).splitlines()) > 1
    except FileNotFoundError:
        return False
    except OSError:
        return True


def data_digest(data: Dataset) -> str:
    """A fingerprint of the data set's contents (every split and label, as loaded), to tell its files apart."""
    h = hashlib.blake2b(digest_size=16)
    for name, x in sorted({**data.splits, **{f"{k}/labels": v for k, v in data.labels.items()}}.items()):
        h.update(name.encode())
        h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def checked_write(path: Path, write: Callable[[Path, object], None], content: object, out: Path) -> None:
    """``write(path, content)`` (an atomic write), with a failure reported as :class:`RunError`."""
    try:
        write(path, content)
    except OSError as e:
        raise RunError(
            f"{path}: could not write ({e.strerror or e}); the files already in {out} are intact. "
            f"Free disk space or fix permissions, then continue with: pyrovae train --out {out} --resume"
        ) from None


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """Write ``metrics.csv`` (one row per epoch: the :data:`METRICS` columns, then a run's own, such as
    ``test_accuracy`` and ``aux_classifier`` of a semi-supervised model) atomically."""
    extra = sorted({k for row in history for k in row} - {*METRICS, "kl_per_dim"})
    atomic_write_text(path, pd.DataFrame(history, columns=[*METRICS, *extra]).to_csv(index=False))


def write_kl_per_dim(path: Path, history: list[dict]) -> None:
    """One row per epoch: ``epoch`` and the KL of each dimension u of each latent site, column ``site[u]``."""
    rows = [
        {"epoch": row["epoch"]}
        | {f"{site}[{u}]": value for site, kl in row["kl_per_dim"].items() for u, value in enumerate(kl)}
        for row in history
    ]
    atomic_write_text(path, pd.DataFrame(rows, columns=None if rows else ["epoch"]).to_csv(index=False))


def check_writable(run_dir: Path, name: str) -> None:
    """A file can be created in ``run_dir`` (a temporary one, gone at once), else refuse before any work.

    :raises InputError: naming the directory, the file to be written and the system's reason.
    """
    try:
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise InputError(
            f"{run_dir}: cannot write {name} there ({e.strerror or e}); fix the directory's permissions, or "
            "copy the run to a writable directory and use the copy"
        ) from None


class LoadedRun(NamedTuple):
    """A trained run rebuilt from its directory, parameters loaded: what :func:`pyrovae.load` returns.

    ``model`` and ``guide`` are plain Pyro callables (``nn.Module`` s whose ``forward`` is the
    program); ``networks`` are their conditionals by name (``encoder_z``, ``prior_z``, ``decoder``),
    e.g. ``run.networks["decoder"].decoder`` is the network of p(x | z).
    """

    config: RunConfig
    model: nn.Module
    guide: nn.Module
    image_shape: tuple[int, ...]

    @property
    def networks(self) -> dict[str, nn.Module]:
        """Every conditional of model and guide by its name (also its ``pyro.module`` name)."""
        return {**self.model.conditionals, **self.guide.conditionals}  # a model file's: its owner's children

    @property
    def spec(self) -> spec.ModelSpec:
        """The run's model, resolved: its spec with the command line's overrides (none for a model file)."""
        return model_spec(self.config)


def load_run(
    run_dir: str | Path, device: str = "auto", *, model_file: str | None = None, checkpoint: str = "best"
) -> LoadedRun:
    """Rebuild a run's model and guide with its trained parameters, on ``device``.

    The parameters go into the networks themselves (``load_state_dict``); Pyro's param store is
    neither read nor cleared, so loading a run leaves a user's own parameters alone. Running the
    model or guide registers its networks there under the names of :attr:`LoadedRun.networks`, as
    ``pyro.module`` does, and they compute with their own (loaded) weights. A hand-written model
    whose parameters are ``pyro.param`` s of plain functions has no networks to hold them: they are
    put in the param store under their names.

    :param model_file: ``FILE.py:FACTORY``, for a run trained from a model file (its code is run
        only when named here, and only if it is the trained file: :mod:`pyrovae.model_file`).
    :param checkpoint: ``"best"``: the parameters of the best epoch (``best.pt``) of a run trained with
        early stopping, and of the last epoch otherwise; ``"last"``: those of the last completed epoch.
    """
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    run_dir = Path(run_dir)
    path = run_dir / (BEST if checkpoint == "best" and (run_dir / BEST).is_file() else CHECKPOINT)
    state = load_checkpoint(path)
    with fits(path):
        config = RunConfig.from_dict(state["config"])
        image_shape = tuple(state["image_shape"])
    model, guide = build_model(config, state["data_dim"], image_shape, model_file=model_file, run_dir=run_dir)
    with fits(path):
        trainer = state["trainer"]
        if "modules" in trainer:  # format 3
            for role, program in (("model", model), ("guide", guide)):
                program.load_state_dict(trainer["modules"][role])
            if trainer["params"]:
                _load_store_params(model, guide, trainer["params"], state["data_dim"])
        else:
            load_networks((model, guide), trainer["params"])
        model, guide = model.to(resolve_device(device)), guide.to(resolve_device(device))
        model.eval()  # evaluated as the discrete model: a relaxed class enumerated, binary units sampled,
        guide.eval()  # and the denoising autoencoder's input not corrupted
    return LoadedRun(config, model, guide, image_shape)


def _load_store_params(model: nn.Module, guide: nn.Module, params: dict[str, torch.Tensor], data_dim: int) -> None:
    """Parameters outside the networks (a plain function's ``pyro.param`` s), into the param store."""
    register_params(model, guide, torch.zeros(2, data_dim))  # creates the entries, then overwritten
    load_params(params)


def load_networks(programs: Sequence[nn.Module], params: dict[str, torch.Tensor]) -> None:
    """Copy parameters saved under their param-store names (``module$$$parameter``, as ``pyro.module``
    names them) into the conditionals of ``programs``; every saved parameter must find its place.

    :raises ValueError: a parameter of no network, or a network's parameter missing (buffers are rebuilt).
    """
    left = dict(params)
    for program in programs:
        for key, module in program.conditionals.items():
            prefix = f"{key}$$$"
            state = {name.removeprefix(prefix): left.pop(name) for name in list(left) if name.startswith(prefix)}
            missing, unexpected = module.load_state_dict(state, strict=False)
            buffers = {name for name, _ in module.named_buffers()}
            if unexpected or set(missing) - buffers:
                raise ValueError(f"network {key}: saved {sorted(unexpected)}, missing {sorted(set(missing) - buffers)}")
    if left:
        raise ValueError(f"saved parameters {sorted(left)} belong to no network of this model")


def load_run_data(config: RunConfig, device: str = "auto") -> Dataset:
    """The run's data set, binarized when (and only when) its likelihood needs binary data or counts."""
    if config.model == "file":
        binarize = config.binarize
    elif not config.has_spec:  # a VQ-VAE: a Bernoulli decoder
        binarize = True
    else:
        binarize = model_spec(config).likelihood.support in ("binary", "count")  # grey values are neither
    return load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        device=resolve_device(device),
        binarize=binarize,
        test_fraction=config.test_fraction,
        valid_fraction=config.valid_fraction,
        label_column=config.label_column,
        size=config.data_size,
    )
