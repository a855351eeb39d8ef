"""A run directory: configuration, building the model, training, reloading.

``RUN_DIR`` holds ``config.json`` (every setting), ``checkpoint.pt`` (written
atomically after every epoch), ``metrics.csv`` and ``kl_per_dim.csv`` (one row
per completed epoch, rewritten from the checkpoint's history so they never hold
an epoch twice), ``samples.png``, ``reconstructions.png`` and, after each epoch
N of ``snapshot_epochs``, ``reconstructions_eN.png`` and ``samples_eN.png``.

Nothing is lost to a fault: a checkpoint is only ever written for a completed
epoch with finite parameters; SIGINT or SIGTERM abandons the epoch in progress
and raises :class:`RunInterrupted`; a NaN, a failed write (full disk,
permissions) raise :class:`RunError`; in every case the last checkpoint is
intact and ``--resume`` continues from it, exactly as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyro
import torch
from torch import nn

from pyrovae import spec
from pyrovae.checkpoint import CHECKPOINT, CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from pyrovae.data import DATASETS, DataError, Dataset, batch_args, load_dataset
from pyrovae.errors import (
    FieldError,
    InputError,
    check_choice,
    check_sizes,
    check_type,
    is_out_of_memory,
    one_line,
)
from pyrovae.inference.bounds import bound_table
from pyrovae.inference.diagnostics import active_units
from pyrovae.inference.training import METRICS, Diverged, TrainConfig, Trainer
from pyrovae.lock import LOCK, run_lock
from pyrovae.plots import decoded_mean, save_grid, save_reconstructions, save_samples

RUN_FILES = (
    "config.json",
    CHECKPOINT,
    "metrics.csv",
    "kl_per_dim.csv",
    "bounds.csv",
    "samples.png",
    "reconstructions.png",
)
SNAPSHOT_FILES = ("reconstructions_e*.png", "samples_e*.png")
SNAPSHOT_SAMPLES = 128  # rows of the fixed Z decoded at every snapshot (the course experiment's 128 x latent_dim)
SNAPSHOT_SEED = 0  # Z depends only on this and latent_dim: the same at every snapshot, across --resume
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunError(RuntimeError):
    """Training stopped on a fault (NaN, failed write); the last checkpoint is intact."""


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped training; the message says how to resume.

    :param signum: the signal received.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run's model and continue its training.

    ``pyrovae train`` stores the model's spec table whole (the user's file, or the
    built-in family's as it was when the run started), so a ``config.json``
    rebuilds its model on its own even after ``models/specs`` change; with
    ``spec`` None (configurations written before this), ``model``'s current file is read.
    """

    dataset: str = "mnist-5k"  # a name in pyrovae.data.DATASETS
    data_dir: str | None = None  # where the data files are (unused by mnist-5k); absolute since pyrovae train stores it
    model: str = "vae"  # the built-in family, pyrovae.spec.BUILTIN, the spec came from (when not from --spec)
    spec: dict | None = None  # the model's TOML spec table as parsed, kept whole; None: the file of `model`
    # Overrides of the model's spec; None keeps the spec's value.
    latent_dim: tuple[int, ...] | None = None  # size of each latent, in the spec's order
    hidden: tuple[int, ...] | None = None  # hidden widths of every encoder; generative networks mirror them
    activation: str | None = None  # a name in pyrovae.nets.ACTIVATIONS
    likelihood: str | None = None  # a name in pyrovae.models.likelihoods.LIKELIHOODS
    obs_scale: float | None = None  # gaussian likelihood: the fixed pixel standard deviation
    min_obs_scale: float | None = None  # learned-gaussian likelihood: floor of the pixel standard deviation
    guide: str | None = None  # diag | full (the autoencoders' guide is a point mass)
    arch: str | None = None  # mlp | conv
    corruption: str | None = None  # dae: mask:P | gaussian:SIGMA
    device: str = "auto"  # as requested: auto (cuda when available) | cpu | cuda
    resolved_device: str | None = None  # the device the last training session ran on, e.g. cpu or cuda:0
    snapshot_epochs: tuple[int, ...] = ()  # epochs after which to save reconstructions_eN.png, samples_eN.png
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        """Every setting of the right type and in range (the model's, in full, when it is built), else a
        :class:`~pyrovae.errors.FieldError` naming it."""
        check_choice("dataset", self.dataset, DATASETS)
        check_type("model", self.model, str, "the name of a built-in model")
        if self.spec is None:
            check_choice("model", self.model, spec.BUILTIN)
        else:
            check_type("spec", self.spec, dict, "a spec table (the TOML of the model, as a JSON object)")
        for name in ("data_dir", "activation", "likelihood", "guide", "arch", "corruption", "resolved_device"):
            if getattr(self, name) is not None:
                check_type(name, getattr(self, name), str, "a string")
        for name in ("latent_dim", "hidden"):
            if getattr(self, name) is not None:
                check_sizes(name, getattr(self, name))
        for name in ("obs_scale", "min_obs_scale"):  # their range: pyrovae.validate.check_model, with the spec's
            if getattr(self, name) is not None:
                check_type(name, getattr(self, name), (int, float), "a number")
        check_type("device", self.device, str, "a device name: auto, cpu, cuda or cuda:N")
        check_sizes("snapshot_epochs", self.snapshot_epochs)
        check_type("train", self.train, TrainConfig, "the training settings (a TrainConfig)")

    def to_json(self) -> str:
        """The config as ``config.json`` holds it."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config of a parsed ``config.json``, older layouts included.

        :raises FieldError: naming the key (``train.seed`` for a training setting) that is unknown,
            of the wrong type or out of range.
        """
        if not isinstance(d, dict):
            raise FieldError("the configuration", f"must be a JSON object of settings, got {type(d).__name__}")
        d = dict(d)
        if isinstance(d.get("latent_dim"), int):  # configs written before hierarchical models
            d["latent_dim"] = (d["latent_dim"],)
        sizes = {k: tuple(d[k]) for k in ("latent_dim", "hidden", "snapshot_epochs") if isinstance(d.get(k), list)}
        _known_keys("", d, cls)
        train = d.get("train", {})
        if not isinstance(train, dict):
            raise FieldError("train", f"must be a JSON object of training settings, got {train!r}")
        _known_keys("train.", train, TrainConfig)
        try:
            train = TrainConfig(**train)
        except FieldError as e:
            raise FieldError(f"train.{e.field}", e.problem) from None
        return cls(**{**d, **sizes, "train": train})


def _known_keys(prefix: str, d: dict, cls: type) -> None:
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise FieldError(f"{prefix}{unknown[0]}", "is not a setting of pyrovae (an unknown key); remove it")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; other names are torch's."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """``device`` with its index: ``cpu``, ``cuda:0``."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def model_spec(config: RunConfig) -> spec.ModelSpec:
    """The run's model: its spec (built-in or the user's) with the command line's overrides."""
    options = ("latent_dim", "hidden", "activation", "likelihood", "obs_scale", "min_obs_scale", "guide", "arch")
    base = spec.load(config.spec if config.spec is not None else config.model)
    return spec.with_options(base, corruption=config.corruption, **{k: getattr(config, k) for k in options})


def build_model(
    config: RunConfig, data_dim: int, image_shape: tuple[int, ...] | None = None
) -> tuple[nn.Module, nn.Module]:
    """The run's model and guide (:func:`pyrovae.spec.build`), on the CPU."""
    return spec.build(model_spec(config), data_dim=data_dim, image_shape=image_shape)


def train_run(
    config: RunConfig, out: str | Path, *, resume: bool = False, force: bool = False, progress: bool = True
) -> list[dict[str, float]]:
    """Train (or continue training) the run in ``out``; returns the metrics history.

    The run directory is locked (:func:`pyrovae.lock.run_lock`) from before its
    first write to the end. An epoch is committed by its checkpoint: everything
    else it writes (snapshots) is written before it, and ``metrics.csv`` and
    ``kl_per_dim.csv`` are rewritten from the checkpoint's history on resume.
    With ``resume``, a run directory with no checkpoint starts from epoch 1 only
    if it shows no completed epoch (it was stopped during its first).

    :raises RunInterrupted: on SIGINT or SIGTERM, after the epoch in progress is abandoned.
    :raises RunError: on a NaN or infinite loss or parameter, or a failed write.
    :raises InputError: when the directory is taken, locked, or cannot be resumed; nothing is written.
    """
    out = Path(out)
    device = resolve_device(config.device)
    config = dataclasses.replace(config, resolved_device=device_name(device))
    pyro.clear_param_store()
    pyro.set_rng_seed(config.train.seed)
    data = load_run_data(config, config.device)
    labels = torch.cat(list(data.labels.values())) if data.labels else None
    spec.check_label_classes(model_spec(config), labels, config.dataset)  # a label input with too few classes
    model, guide = (m.to(device) for m in build_model(config, data.data_dim, data.image_shape))
    trainer = Trainer(model, guide, data, config.train, progress=progress, labels=bool(model.labels))
    digest = data_digest(data)
    with _open_run_dir(out, resume=resume, force=force):
        if resume:
            _restore(trainer, out, digest)
        _write(out / "config.json", atomic_write_text, config.to_json(), out)  # --resume --epochs N changes it
        _write(out / "metrics.csv", write_metrics, trainer.history, out)  # a kill may have come before its rewrite
        _write(out / "kl_per_dim.csv", write_kl_per_dim, trainer.history, out)
        with stop_on_signals() as received:
            while trainer.epoch < config.train.epochs:
                row = _train_epoch(trainer, out, received)
                if row["epoch"] in config.snapshot_epochs:  # before the checkpoint, which commits the epoch
                    save_snapshots(model, guide, data, out, row["epoch"])
                state = {
                    "config": dataclasses.asdict(config),
                    "data_dim": data.data_dim,
                    "image_shape": data.image_shape,
                    "data_digest": digest,
                    "trainer": trainer.state_dict(),
                }
                _write(out / CHECKPOINT, save_checkpoint, state, out)
                _write(out / "metrics.csv", write_metrics, trainer.history, out)
                _write(out / "kl_per_dim.csv", write_kl_per_dim, trainer.history, out)
                print(epoch_line(row, model.probabilistic), flush=True)
                if received:  # the signal came during evaluation or saving: the epoch is safe
                    raise _interrupted(out, received[0], trainer.epoch)
        save_figures(model, guide, data, out)
    return trainer.history


@contextmanager
def _open_run_dir(out: Path, *, resume: bool, force: bool) -> Iterator[None]:
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


def _restore(trainer: Trainer, out: Path, digest: str) -> None:
    """Load ``out``'s checkpoint into ``trainer``; without one, refuse when the directory shows completed epochs.

    :raises InputError: a missing checkpoint of a run with epochs, or data other than the run's.
    """
    path = out / CHECKPOINT
    if not path.exists():
        shown = epochs_shown(out)
        if shown:
            raise InputError(
                f"{path} is missing, but {out} shows completed epochs ({', '.join(shown)}); resuming would start "
                f"at epoch 1 and overwrite them, so nothing was touched. Restore {CHECKPOINT} from a copy, or "
                f"start over with pyrovae train --out {out} --force"
            )
        return
    state = load_checkpoint(path)
    with _fits(path):
        trainer.load_state_dict(state["trainer"])
    if state.get("data_digest", digest) != digest:  # checkpoints before data digests: nothing to compare
        raise DataError(
            f"the data set of this run ({trainer.data.name}) is not the one {path} was trained on (its contents "
            "differ); resume with the run's own files (--data-dir), or start a new run"
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


def _train_epoch(trainer: Trainer, out: Path, received: list[int]) -> dict[str, float]:
    """One epoch of ``trainer``, abandoned once a signal is in ``received``; faults become
    :class:`RunError` / :class:`RunInterrupted`."""
    try:
        row = trainer.train_epoch(stop=lambda: bool(received))
    except Diverged as e:
        cfg = trainer.config
        # From a learning rate known to train, so that following the advice can succeed (a diverging
        # lr of 1e9 divided by 10 each time never would); the clip bound likewise.
        lr = min(cfg.lr / 10, TrainConfig.lr)
        clip = 100 if cfg.clip_norm is None else min(cfg.clip_norm / 10, 100)
        command = f"pyrovae train --out {out} --resume --lr {lr:g} --clip-norm {clip:g}"
        kept = f"{out / CHECKPOINT} (epoch {trainer.epoch}) is kept" if trainer.epoch else "no epoch was completed"
        raise RunError(
            f"{e}. {kept}; continue with a lower learning rate and a bounded gradient norm: {command}"
        ) from None
    if row is None:
        raise _interrupted(out, received[0], trainer.epoch)
    return row


def _interrupted(out: Path, signum: int, epochs: int) -> RunInterrupted:
    saved = f"{epochs} completed epochs are saved in {out / CHECKPOINT}" if epochs else "no epoch was completed"
    return RunInterrupted(
        f"{signal.Signals(signum).name} received; {saved}; continue with: pyrovae train --out {out} --resume", signum
    )


def _write(path: Path, write: Callable[[Path, object], None], content: object, out: Path) -> None:
    """``write(path, content)`` (an atomic write), with a failure reported as :class:`RunError`."""
    try:
        write(path, content)
    except OSError as e:
        raise RunError(
            f"{path}: could not write ({e.strerror or e}); the files already in {out} are intact. "
            f"Free disk space or fix permissions, then continue with: pyrovae train --out {out} --resume"
        ) from None


@contextmanager
def stop_on_signals(signums: tuple[int, ...] = STOP_SIGNALS) -> Iterator[list[int]]:
    """Record the first of ``signums`` in the yielded list instead of dying; a second one acts as usual.

    Only the main thread can install signal handlers; elsewhere the list stays empty.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        for s in signums:  # a second Ctrl-C stops at once
            signal.signal(s, previous[s])

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def epoch_line(row: dict[str, float], probabilistic: bool) -> str:
    """One epoch's progress line; an autoencoder's "ELBO" is its reconstruction term alone, so it is named so."""
    if not probabilistic:
        return (
            f"epoch {row['epoch']:>3}  train log p(x|f(x)) {row['train_elbo']:9.3f}  "
            f"test log p(x|f(x)) {row['test_elbo']:9.3f}  (no ELBO: an autoencoder)  {row['seconds']:6.1f}s"
        )
    return (
        f"epoch {row['epoch']:>3}  train ELBO {row['train_elbo']:9.3f}  test ELBO {row['test_elbo']:9.3f}  "
        f"KL {row['kl']:7.3f}  active {row['active_units']:>3}  beta {row['beta']:.3g}  {row['seconds']:6.1f}s"
    )


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """Write ``metrics.csv`` (one row per epoch, :data:`METRICS` columns) atomically."""
    atomic_write_text(path, pd.DataFrame(history, columns=list(METRICS)).to_csv(index=False))


def write_kl_per_dim(path: Path, history: list[dict]) -> None:
    """One row per epoch: ``epoch`` and the KL of each dimension u of each latent site, column ``site[u]``."""
    rows = [
        {"epoch": row["epoch"]}
        | {f"{site}[{u}]": value for site, kl in row["kl_per_dim"].items() for u, value in enumerate(kl)}
        for row in history
    ]
    atomic_write_text(path, pd.DataFrame(rows, columns=None if rows else ["epoch"]).to_csv(index=False))


def save_snapshots(model: nn.Module, guide: nn.Module, data: Dataset, out: Path, epoch: int) -> None:
    """``reconstructions_e{epoch}.png`` and ``samples_e{epoch}.png``: the fixed Z decoded, 16 per row.

    Z is the first prior draw of an RNG seeded with :data:`SNAPSHOT_SEED` (for every
    latent layer of every model family), on a forked RNG: snapshots leave training unchanged.
    """
    labels = bool(model.labels)
    inputs = sample_inputs(model, None, device=data.device)  # a conditional model: each class in turn
    n = SNAPSHOT_SAMPLES if not inputs else inputs[0].shape[0]
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        torch.manual_seed(SNAPSHOT_SEED)
        samples = decoded_mean(model, None, *inputs, batch_size=n)
    save_grid(samples, data.image_shape, out / f"samples_e{epoch}.png", nrow=16)
    batch = batch_args(next(data.eval_batches("test", 32, labels=labels)))
    save_reconstructions(
        model, guide, batch[0], data.image_shape, out / f"reconstructions_e{epoch}.png", inputs=batch[1:]
    )


def save_figures(model: nn.Module, guide: nn.Module, data: Dataset, out: Path) -> None:
    """Write ``samples.png`` and ``reconstructions.png`` of a trained run into ``out``."""
    labels = bool(model.labels)
    inputs = sample_inputs(model, None, device=data.device)
    save_samples(model, data.image_shape, out / "samples.png", n=inputs[0].shape[0] if inputs else 64, inputs=inputs)
    batch = batch_args(next(data.eval_batches("test", 32, labels=labels)))
    save_reconstructions(model, guide, batch[0], data.image_shape, out / "reconstructions.png", inputs=batch[1:])


def sample_inputs(
    model: nn.Module, label: int | None, *, n: int = 64, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Labels to generate with: ``n`` copies of ``label``, or 8 of every class (one class per row of the grid)."""
    if not model.inputs:
        if label is not None:
            raise ValueError("--label applies to label-conditioned models (e.g. --model cvae); this run has no labels")
        return ()
    (classes,) = model.inputs.values()
    if label is None:
        return (torch.arange(classes, device=device).repeat_interleave(8),)
    if not 0 <= label < classes:
        raise ValueError(f"--label must be a class in 0..{classes - 1}, got {label}")
    return (torch.full((n,), label, dtype=torch.long, device=device),)


def read_config(run_dir: Path, state: dict | None) -> tuple[RunConfig, str | None]:
    """The run's configuration from ``config.json``, or, when that is missing or not JSON, from the copy in its
    checkpoint ``state`` (``train`` rewrites ``config.json``); with the problem that made it use the copy.

    :raises InputError: a ``config.json`` whose settings are wrong (named as its keys), or neither file usable.
    """
    path = run_dir / "config.json"
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # missing, unreadable, not UTF-8 or not JSON
        problem = f"{path}: not found" if isinstance(e, FileNotFoundError) else f"{path}: damaged ({one_line(e)})"
        if state is None:
            raise InputError(
                f"{problem}, and there is no {CHECKPOINT} to rebuild it from, so {run_dir} cannot be resumed; "
                f"start it over with pyrovae train --out {run_dir} --force"
            ) from None
        with _fits(run_dir / CHECKPOINT):
            config = RunConfig.from_dict(state["config"])
        return config, f"{problem}; using the copy of the settings in {run_dir / CHECKPOINT}"
    try:
        return RunConfig.from_dict(d), None
    except FieldError as e:
        rebuild = f", or delete it to have it rebuilt from {CHECKPOINT}" if state is not None else ""
        raise e.renamed(f"{path}: {e.field}", f"; correct it in config.json{rebuild}") from None


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
        return {**self.model.conditionals, **self.guide.conditionals}

    @property
    def spec(self) -> spec.ModelSpec:
        """The run's model, resolved: its spec with the command line's overrides."""
        return model_spec(self.config)


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """Rebuild a run's model and guide with its trained parameters, on ``device``.

    The parameters go into the networks themselves (``load_state_dict``); Pyro's param store is
    neither read nor cleared, so loading a run leaves a user's own parameters alone. Running the
    model or guide registers its networks there under the names of :attr:`LoadedRun.networks`, as
    ``pyro.module`` does, and they compute with their own (loaded) weights.
    """
    path = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path)
    with _fits(path):
        config = RunConfig.from_dict(state["config"])
        image_shape = tuple(state["image_shape"])
        model, guide = build_model(config, state["data_dim"], image_shape)
        load_networks((model, guide), state["trainer"]["params"])
        model, guide = model.to(resolve_device(device)), guide.to(resolve_device(device))
        guide.eval()  # a trained run is evaluated without the denoising autoencoder's input corruption
    return LoadedRun(config, model, guide, image_shape)


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


@contextmanager
def _fits(path: Path) -> Iterator[None]:
    """Report a checkpoint whose contents do not fit the model being built as a :class:`CheckpointError`."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        if is_out_of_memory(e):
            raise  # not the checkpoint's fault
        raise CheckpointError(f"{path}: does not fit this version of pyrovae or this run ({e})") from None


def load_run_data(config: RunConfig, device: str = "auto") -> Dataset:
    """The run's data set, binarized when (and only when) its likelihood needs binary data or counts."""
    binarize = model_spec(config).likelihood.support in ("binary", "count")  # grey values are neither
    return load_dataset(config.dataset, data_dir=config.data_dir, device=resolve_device(device), binarize=binarize)


def evaluate_run(
    run_dir: str | Path,
    *,
    ks: Sequence[int] = (1, 5, 50, 5000),
    split: str = "test",
    limit: int | None = None,
    chunk_size: int | None = None,
    batch_size: int = 100,
    device: str = "auto",
) -> tuple[pd.DataFrame | None, dict[str, int]]:
    """Bounds L_k on a split and active units; writes ``RUN_DIR/bounds.csv``.

    ``bounds.csv`` has a row per k: ``k``, ``bound``, ``stderr``, ``seconds``,
    ``split`` and ``images`` (the number of datapoints evaluated, after ``limit``).
    The particles are drawn from the run's seed, so evaluating twice gives the same table.

    An autoencoder has no density over x, so its bounds are not applicable: the
    table is then ``None`` and no ``bounds.csv`` is written (active units still are).
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir, device)
    check_writable(run_dir, "bounds.csv")
    with run_lock(run_dir, "evaluate"):
        data = load_run_data(run.config, device)
        data.split(split)  # fail early, with the split names, on a typo

        def batches():
            return data.eval_batches(split, batch_size, limit=limit, labels=bool(run.model.labels))

        if not run.model.probabilistic:
            return None, active_units(run.guide, batches())

        pyro.set_rng_seed(run.config.train.seed)  # the same run evaluates to the same numbers (on one device)
        table = pd.DataFrame(bound_table(run.model, run.guide, batches, ks, chunk_size=chunk_size))
        images = data.split(split).shape[0]
        table["split"] = split
        table["images"] = images if limit is None else min(limit, images)
        atomic_write_text(run_dir / "bounds.csv", table.to_csv(index=False))
        return table, active_units(run.guide, batches())


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
