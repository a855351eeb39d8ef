"""``pyrovae evaluate``: the bounds L_k of a trained run and its active units, into ``bounds.csv``; with
``--disentanglement``, the disentanglement metrics against the data set's factors, into ``disentanglement.csv``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch

from pyrovae.checkpoint import atomic_write_text
from pyrovae.data import Dataset
from pyrovae.distributed import Shard
from pyrovae.inference.bounds import bound_table
from pyrovae.inference.clustering import categorical_sites, cluster_assignments, clustering_accuracy
from pyrovae.inference.diagnostics import active_units, posterior_means, stochastic_latents
from pyrovae.inference.disentanglement import disentanglement_scores
from pyrovae.lock import run_lock
from pyrovae.primitives import batch_args
from pyrovae.store import LoadedRun, check_writable, load_run, load_run_data


def evaluate_run(
    run_dir: str | Path,
    *,
    ks: Sequence[int] = (1, 5, 50, 5000),
    split: str = "test",
    limit: int | None = None,
    chunk_size: int | None = None,
    batch_size: int = 100,
    device: str = "auto",
    model_file: str | None = None,
    shard: Shard | None = None,
    disentanglement: bool = False,
) -> tuple[pd.DataFrame | None, dict[str, int], dict[str, tuple[str, float]], dict[str, float]]:
    """Bounds L_k on a split and active units; writes ``RUN_DIR/bounds.csv``.

    ``bounds.csv`` has a row per k: ``k``, ``bound``, ``stderr``, ``seconds``, ``bits_per_dim``
    (``-bound / (D ln 2)``), ``split`` and ``images`` (the number of datapoints evaluated, after ``limit``).
    A guide whose latents are all point masses (a VQ-VAE's, on a discrete set) draws the same particle k
    times, so its L_k all equal L_1, which is computed once.
    The particles of each batch are drawn from the run's seed, the batch's index and k alone, so evaluating
    twice gives the same table, and so does evaluating under ``torchrun`` with ``shard``: each rank takes its
    share of the batches, the per-datapoint bounds are gathered, and rank 0 alone writes ``bounds.csv`` (the
    other ranks return ``None`` and no units or accuracies).

    An autoencoder has no density over x, so its bounds are not applicable: the
    table is then ``None`` and no ``bounds.csv`` is written (active units still are).

    The third item is, where the split has labels, the accuracy of argmax q(y | x) of each
    categorical latent of the guide, ``{site: (kind, accuracy)}``: ``classification`` against the labels for a
    partially observed latent (m2's classifier), else after matching its clusters one to one with
    the classes (:mod:`pyrovae.inference.clustering`). The bounds of a model with a partially
    observed latent are those of x alone, log p(x), its labels not given; ``clustering`` otherwise.

    The fourth item, with ``disentanglement``, is the disentanglement metrics of the posterior means of the split
    against its factors (a data set with factors: sprites), also written to ``RUN_DIR/disentanglement.csv``
    (one row: each metric, ``split``, ``images``); ``{}`` without.

    :param model_file: ``FILE.py:FACTORY`` of a run of a hand-written model (:mod:`pyrovae.model_file`).
    :raises DataError: ``disentanglement`` for a data set without factors.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir, device, model_file=model_file)
    main = shard is None or shard.main
    if main:
        check_writable(run_dir, "bounds.csv")
        if disentanglement:
            check_writable(run_dir, "disentanglement.csv")
    with run_lock(run_dir, "evaluate") if main else nullcontext():
        data = load_run_data(run.config, device)
        data.split(split)  # fail early, with the split names, on a typo

        reads_labels = bool(run.model.inputs or run.model.observed)  # a partially observed latent's are not given

        def batches():
            return data.eval_batches(split, batch_size, limit=limit, labels=reads_labels)

        computed = [1] if run.model.probabilistic and point_mass(run.guide, batches) else ks  # k particles: one
        seed = run.config.train.seed  # the same run evaluates to the same numbers (on one device)
        if not main:  # this rank's share of the bounds, then done
            if run.model.probabilistic:
                bound_table(run.model, run.guide, batches, computed, chunk_size=chunk_size, seed=seed, shard=shard,
                            progress=False)  # fmt: skip
            return None, {}, {}, {}
        scores = _disentanglement(run, data, run_dir, split, limit, batch_size) if disentanglement else {}
        clusters = {}
        if split in data.labels and not reads_labels:  # a label the model reads is no clustering target
            clusters = _clustering(run, lambda: data.eval_batches(split, batch_size, limit=limit, labels=True))
        if not run.model.probabilistic:
            return None, active_units(run.guide, batches()), clusters, scores

        rows = bound_table(run.model, run.guide, batches, computed, chunk_size=chunk_size, seed=seed, shard=shard)
        table = pd.DataFrame([rows[0] | {"k": k} for k in ks] if computed != ks else rows)
        table["bits_per_dim"] = -table["bound"] / (data.data_dim * math.log(2))
        images = data.split(split).shape[0]
        table["split"] = split
        table["images"] = images if limit is None else min(limit, images)
        atomic_write_text(run_dir / "bounds.csv", table.to_csv(index=False))
        return table, active_units(run.guide, batches()), clusters, scores


def _disentanglement(
    run: LoadedRun, data: Dataset, run_dir: Path, split: str, limit: int | None, batch_size: int
) -> dict[str, float]:
    """The disentanglement metrics of the posterior means E_q[z | x] of ``split`` (every latent site of the
    guide side by side; a point-mass guide's values) against its factors, seeded with the run's seed
    (:func:`~pyrovae.inference.disentanglement.disentanglement_scores`); written to ``disentanglement.csv``."""
    factors = data.factors_of(split)
    if (subset := data.eval_subset(split, limit)) is not None:  # the rows the batches hold, in their order
        factors = factors[subset]
    with torch.no_grad():
        means = posterior_means(run.guide, data.eval_batches(split, batch_size, limit=limit))
    codes = torch.cat([means[name] for name in sorted(means)], dim=-1)
    scores = disentanglement_scores(codes.cpu().numpy(), factors.cpu().numpy(), seed=run.config.train.seed)
    row = {**scores, "split": split, "images": len(codes)}
    atomic_write_text(run_dir / "disentanglement.csv", pd.DataFrame([row]).to_csv(index=False))
    return scores


def point_mass(guide: Callable, batches: Callable[[], Iterator]) -> bool:
    """Whether every latent of ``guide`` is a point mass (a VQ-VAE's), so that every L_k is L_1."""
    return not stochastic_latents(guide, *batch_args(next(iter(batches()))))


def _clustering(
    run: LoadedRun, labelled: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
) -> dict[str, tuple[str, float]]:
    """The accuracy of every categorical latent of the guide on labelled batches ``(x, y)``: as a classifier for
    a partially observed one, after matching its clusters to the classes for another."""
    first, _ = next(labelled())
    labels = torch.cat([y for _, y in labelled()])
    result = {}
    for site in categorical_sites(run.guide, first):
        predicted = cluster_assignments(run.guide, (x for x, _ in labelled()), site=site)
        if site in run.guide.partial:
            result[site] = ("classification", float((predicted == labels).float().mean()))
        else:
            result[site] = ("clustering", clustering_accuracy(predicted, labels))
    return result
