"""A training run: train (or continue) the run in a directory, epoch by epoch, losing nothing to a fault.

Nothing is lost to a fault: a checkpoint is only ever written for a completed
epoch with finite parameters, and it commits the epoch (its snapshots are
written before it); SIGINT or SIGTERM abandons the epoch in progress and raises
:class:`RunInterrupted`; a NaN, a failed write (full disk, permissions) raise
:class:`~pyrovae.store.RunError`; in every case the last checkpoint is intact and
``--resume`` continues from it, exactly as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pyro
import torch
from pyro import poutine
from torch import nn

from pyrovae import spec
from pyrovae.checkpoint import BEST, CHECKPOINT, atomic_write_text, fits, load_checkpoint, save_checkpoint
from pyrovae.data import DataError, Dataset, hide_labels
from pyrovae.distributed import Shard
from pyrovae.errors import (
    InputError,
)
from pyrovae.inference.diagnostics import posterior_means
from pyrovae.inference.objectives import AuxiliaryLoss
from pyrovae.inference.parameters import evaluating
from pyrovae.inference.train_config import Diverged, TrainConfig, heldout_elbo
from pyrovae.inference.training import Trainer
from pyrovae.models.likelihoods import Likelihood
from pyrovae.primitives import batch_args
from pyrovae.run_config import RunConfig, build_model, device_name, model_spec, resolve_device
from pyrovae.store import (
    RunError,
    checked_write,
    data_digest,
    epochs_shown,
    load_run_data,
    open_run_dir,
    write_kl_per_dim,
    write_metrics,
)
from pyrovae.validate import check_label
from pyrovae.viz.latent_space import decoded_mean
from pyrovae.viz.plots import save_grid, save_reconstructions, save_samples

SNAPSHOT_SAMPLES = 128  # rows of the fixed Z decoded at every snapshot (the course experiment's 128 x latent_dim)


SNAPSHOT_SEED = 0  # Z depends only on this and latent_dim: the same at every snapshot, across --resume


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped training; the message says how to resume.

    :param signum: the signal received.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def train_run(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    model_file: str | None = None,
    shard: Shard | None = None,
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
    :param model_file: ``FILE.py:FACTORY`` of a run of a hand-written model (:mod:`pyrovae.model_file`).
    :param shard: this process's rank under ``torchrun`` (:mod:`pyrovae.distributed`): every rank trains on its
        share of each batch and reads the checkpoint on ``resume``; rank 0 alone evaluates, prints and writes.
    :raises InputError: when the directory is taken, locked, or cannot be resumed; nothing is written.
    """
    out = Path(out)
    device = resolve_device(config.device)
    config = dataclasses.replace(config, resolved_device=device_name(device))
    pyro.clear_param_store()
    pyro.set_rng_seed(config.train.seed)
    data = load_run_data(config, config.device)
    labels = torch.cat(list(data.labels.values())) if data.labels else None
    if config.has_spec:
        spec.check_label_classes(model_spec(config), labels, config.dataset)  # a label input with too few classes
        check_support(model_spec(config).likelihood, data)
    built = build_model(config, data.data_dim, data.image_shape, model_file=model_file, run_dir=out)
    model, guide = (m.to(device) for m in built)
    digest = data_digest(data)
    data, aux, metrics = semi_supervised(config, model, guide, data)
    if hasattr(guide, "epoch_metrics"):  # a guide's own measures (a VQ-VAE's codebook usage), on the held-out split
        size = config.train.eval_batch_size
        metrics |= guide.epoch_metrics(lambda: data.eval_batches(data.heldout, size))
    if config.model == "vqvae-prior" and not resume:  # the second stage starts from the first one's networks
        load_first_stage(model, guide, Path(config.vq["first_stage"]), data.image_shape)
    main = shard is None or shard.main
    trainer = Trainer(
        model, guide, data, config.train, aux=aux, metrics=metrics, progress=progress and main,
        labels=bool(model.labels), shard=shard,
    )  # fmt: skip
    with open_run_dir(out, resume=resume, force=force) if main else nullcontext():  # rank 0 alone writes the run
        if resume:
            _restore(trainer, out, digest)
        if main:
            checked_write(out / "config.json", atomic_write_text, config.to_json(), out)  # --resume --epochs N: new
            checked_write(out / "metrics.csv", write_metrics, trainer.history, out)  # a kill may have come first
            checked_write(out / "kl_per_dim.csv", write_kl_per_dim, trainer.history, out)
        epoch_0 = trainer.epoch  # the epoch this session starts from (a resumed run's compiles again)
        with stop_on_signals() as received:
            while trainer.epoch < config.train.epochs and not trainer.patience_spent:
                _train_epoch(trainer, out, received)  # raises on a fault or a signal mid-epoch
                if main:
                    _commit(trainer, model, guide, data, out, config, digest)
                    if trainer.epoch == epoch_0 + 1 and trainer.compiled is not None and trainer.compiled.graphs:
                        graphs, seconds = len(trainer.compiled.graphs), trainer.compiled.seconds
                        print(f"compiled the training step: {graphs} graph(s) in {seconds:.1f} s", flush=True)
                if received:  # the signal came during evaluation or saving: the epoch is safe
                    raise _interrupted(out, received[0], trainer.epoch)
        history = trainer.history
        if not main:
            return history
        if config.train.early_stopping is not None:  # the figures, as pyrovae.load, of the best epoch
            _stopped_early(trainer, out)
        with evaluating(model, guide):  # drawn as the trained model is evaluated
            save_figures(model, guide, data, out)
    return history


def load_first_stage(model: nn.Module, guide: nn.Module, run_dir: Path, image_shape: tuple[int, ...] | None) -> None:
    """The encoder, codebook and decoder of the ``vqvae`` run in ``run_dir`` (its best or last epoch) into the
    model and guide of a ``vqvae-prior``, whose prior network stays as built.

    :raises InputError: a run of other images, or whose networks do not fit.
    """
    path = run_dir / (BEST if (run_dir / BEST).is_file() else CHECKPOINT)
    state = load_checkpoint(path)
    if tuple(state["image_shape"]) != tuple(image_shape or ()):
        raise InputError(
            f"--from {run_dir}: its VQ-VAE was trained on images of shape {tuple(state['image_shape'])}, and this "
            f"data set's are {tuple(image_shape or ())}; train the prior on the first stage's data set"
        )
    modules = state["trainer"]["modules"]
    with fits(path):
        guide.load_state_dict(modules["guide"])
        missing, unexpected = model.load_state_dict(modules["model"], strict=False)
    if unexpected or any(not key.startswith("prior_logits.") for key in missing):
        raise InputError(f"--from {run_dir}: its networks do not fit this vqvae-prior ({(unexpected or missing)[:3]})")


def _commit(
    trainer: Trainer, model: nn.Module, guide: nn.Module, data: Dataset, out: Path, config: RunConfig, digest: str
) -> None:
    """Write the epoch just trained: its snapshots, ``best.pt`` (a new best, with early stopping), then the checkpoint
    that commits it, the metrics rewritten from its history, and its progress line."""
    epoch = trainer.epoch
    if epoch in config.snapshot_epochs:  # before the checkpoint, which commits the epoch
        with evaluating(model, guide):
            save_snapshots(model, guide, data, out, epoch)
    state = {
        "config": dataclasses.asdict(config),
        "data_dim": data.data_dim,
        "image_shape": data.image_shape,
        "data_digest": digest,
        "trainer": trainer.state_dict(),
    }
    if config.train.early_stopping is not None and trainer.best_epoch == epoch:
        checked_write(out / BEST, save_checkpoint, state, out)  # before the checkpoint commits the epoch
    checked_write(out / CHECKPOINT, save_checkpoint, state, out)
    checked_write(out / "metrics.csv", write_metrics, trainer.history, out)
    checked_write(out / "kl_per_dim.csv", write_kl_per_dim, trainer.history, out)
    print(epoch_line(trainer.history[-1], model.probabilistic), flush=True)


def _stopped_early(trainer: Trainer, out: Path) -> None:
    """Say where the best epoch is (and whether training stopped early), and load its parameters into ``trainer``."""
    best, patience = trainer.best_epoch, trainer.config.early_stopping
    why = f"no higher validation ELBO in {patience} epochs; " if trainer.patience_spent else ""
    score = heldout_elbo(trainer.history[best - 1])[1]
    print(f"early stopping: {why}the best epoch, {best} (validation ELBO {score:.3f}), is in {out / BEST}", flush=True)
    with fits(out / BEST):
        trainer.load_state_dict(load_checkpoint(out / BEST)["trainer"])


def check_support(likelihood: Likelihood, data: Dataset) -> None:
    """Every split that is not binarized per pass inside the likelihood's support, before training.

    :raises DataError: naming the data set, the split and the fix (another ``--likelihood``, or binarizing).
    """
    for split, x in data.splits.items():
        if split in data.dynamic:  # grey values in [0, 1], binarized at every pass
            continue
        try:
            likelihood.check(x)
        except ValueError as e:
            raise DataError(f"data set {data.name!r}, split {split!r}: {e}") from None


def semi_supervised(
    config: RunConfig, model: nn.Module, guide: nn.Module, data: Dataset
) -> tuple[Dataset, tuple[AuxiliaryLoss, ...], dict[str, Callable[[], float]]]:
    """For a model with a partially observed latent y (m2): the data with all but ``config.labelled`` training
    labels hidden (-1) and every other split's (its ELBO is then that of x alone), the classifier term
    ``-alpha sum_labelled log q(y | x)`` (:func:`classifier_term`), and the accuracy of argmax q(y | x) per
    epoch on the held-out split (``valid_accuracy``, or ``test_accuracy`` without a validation split).

    Other models get ``data`` as it is and neither.

    References: D. P. Kingma, S. Mohamed, D. J. Rezende, M. Welling, "Semi-supervised Learning with Deep
    Generative Models", NeurIPS 2014 (alpha = 0.1 N).
    """
    partial = model.partial
    if not partial:
        return data, (), {}
    ((site, classes),) = partial.items()
    train = data.labels_of("train")
    if config.labelled is not None:
        train = hide_labels(train, config.labelled, seed=config.train.seed, classes=classes)
    hidden = {split: torch.full_like(y, -1) for split, y in data.labels.items()} | {"train": train}
    known = int((train >= 0).sum())
    weight = config.classifier_weight if config.classifier_weight is not None else 0.1 * train.shape[0] / known
    aux = (AuxiliaryLoss("classifier", weight, classifier_term(site, data, train, config.train.batch_size)),)
    split, batch_size = data.heldout, config.train.eval_batch_size  # the validation split where there is one
    heldout_labels = data.labels_of(split)

    def accuracy() -> float:
        q_y = posterior_means(guide, data.eval_batches(split, batch_size))[site]  # q(y | x), no label given
        return float((q_y.argmax(-1) == heldout_labels).float().mean())

    return dataclasses.replace(data, labels=hidden), aux, {f"{split}_accuracy": accuracy}


def classifier_term(site: str, data: Dataset, labels: torch.Tensor, size: int) -> Callable[..., torch.Tensor]:
    """The classifier term's function for :class:`AuxiliaryLoss`: ``-sum log q(y | x)`` over ``size`` labelled
    training digits drawn (with replacement) from those whose label is known (``labels >= 0``) at every step,
    whatever the step's own batch holds, scaled so that the trainer's N / B makes it an unbiased estimate of
    ``-sum_labelled log q(y | x)`` over all of them.

    A minibatch of the training split holds few labelled digits (one in 45 with 100 labels of 4,500), so
    the term on the batch's own labels would train q(y | x) on each label once an epoch; drawn from the
    labelled pool, it does so about N / size times an epoch, as M2's implementations do (a labelled
    batch beside every unlabelled one). The objective is the same in expectation.
    """
    pool = torch.nonzero(labels >= 0).squeeze(-1)
    x_known, y_known = data.splits["train"][pool], labels[pool]  # on the data's device
    dynamic = "train" in data.dynamic

    def fn(_, guide: nn.Module, x: torch.Tensor, *__) -> torch.Tensor:
        index = torch.randint(len(pool), (size,), device=x_known.device)
        xs = torch.bernoulli(x_known[index]) if dynamic else x_known[index]  # binarized per draw, as the batches
        scale = (len(pool) / size) * (x.shape[0] / labels.shape[0])  # times the trainer's N / B: len(pool) / size
        return -scale * guide.log_q_known(site, xs, y_known[index])

    return fn


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
    with fits(path):
        trainer.load_state_dict(state["trainer"])
    if state.get("data_digest", digest) != digest:  # checkpoints before data digests: nothing to compare
        raise DataError(
            f"the data set of this run ({trainer.data.name}) is not the one {path} was trained on (its contents "
            "differ); resume with the run's own files (--data-dir), or start a new run"
        )


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
    split, score = heldout_elbo(row)
    if not probabilistic:
        return (
            f"epoch {row['epoch']:>3}  train log p(x|f(x)) {row['train_elbo']:9.3f}  "
            f"{split} log p(x|f(x)) {score:9.3f}  (no ELBO: an autoencoder)  {row['seconds']:6.1f}s"
        )
    units = f"active {row['active_units']:>3}"
    if "codes_used" in row:  # a codebook's (VQ-VAE): its use says more than the spread of the code vectors
        units = f"codes {row['codes_used']:>4.0f}  perplexity {row['perplexity']:6.1f}"
    return (
        f"epoch {row['epoch']:>3}  train ELBO {row['train_elbo']:9.3f}  {split} ELBO {score:9.3f}  "
        f"KL {row['kl']:7.3f}  {units}  beta {row['beta']:.3g}  {row['seconds']:6.1f}s"
    )


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
    program, inputs, n = sample_program(model, None, device=data.device)  # a class per row, where there are classes
    save_samples(program, data.image_shape, out / "samples.png", n=n, inputs=inputs)
    batch = batch_args(next(data.eval_batches("test", 32, labels=labels)))
    save_reconstructions(model, guide, batch[0], data.image_shape, out / "reconstructions.png", inputs=batch[1:])


def sample_inputs(
    model: nn.Module, label: int | None, *, n: int = 64, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Labels to generate with: ``n`` copies of ``label``, or 8 of every class (one class per row of the grid)."""
    check_label(model.inputs, label)
    return _classes(model.inputs, label, n, device)


def sample_program(
    model: nn.Module, label: int | None, *, n: int = 64, device: torch.device
) -> tuple[Callable, tuple[torch.Tensor, ...], int]:
    """The model to draw samples from, its inputs and how many: a label input's classes (:func:`sample_inputs`),
    or, for a model with a categorical latent y (a gmvae's, m2's), the model with y fixed to ``label`` (or to
    each class in turn, 8 per class); other models as they are, with no inputs."""
    discrete = model.discrete
    if model.inputs or not discrete:
        inputs = sample_inputs(model, label, n=n, device=device)
        return model, inputs, inputs[0].shape[0] if inputs else n
    site = next(iter(discrete))
    check_label({site: discrete[site]}, label)
    (y,) = _classes({site: discrete[site]}, label, n, device)
    return poutine.condition(model, data={site: y}), (), y.shape[0]


def _classes(classes: dict[str, int], label: int | None, n: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    if not classes:
        return ()
    (k,) = classes.values()
    if label is None:
        return (torch.arange(k, device=device).repeat_interleave(8),)
    return (torch.full((n,), label, dtype=torch.long, device=device),)
