"""``pyrovae plot``: every figure of a run directory, by kind.

All kinds but ``curves`` load the run's model and guide and use the test split
of its data set (binarized once with a fixed seed, as for the test ELBO).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from pyrovae.checkpoint import CHECKPOINT, load_checkpoint
from pyrovae.inference.diagnostics import kl_per_dim, stochastic_latents, unit_activity
from pyrovae.store import load_run, load_run_data
from pyrovae.validate import UsageError
from pyrovae.viz import latent_figures, latent_space, plots

PAIRS = 5  # image pairs of the interpolate figure
PAIR_SEED = 0  # fixed: the same test pairs in every figure of every run


@dataclass(frozen=True)
class PlotOptions:
    """The options of ``pyrovae plot``; each kind reads the ones it needs."""

    temperature: float = 1.0  # samples: z = mean + T (z_prior - mean)
    triples: tuple[tuple[int, int, int], ...] = ((7, 1, 4), (8, 0, 1), (9, 4, 3), (6, 0, 5))  # arithmetic: a, b, c
    device: str = "auto"  # auto | cpu | cuda
    prior_contours: bool = False  # latent-map (D = 2): the prior's 1- and 2-sigma contours
    site: str | None = None  # the latent site to draw; None: the guide's only one
    model_file: str | None = None  # FILE.py:FACTORY of a run of a hand-written model (pyrovae.model_file)


class EncodedTestSplit(NamedTuple):
    """A loaded run and the posterior means of its test split."""

    model: nn.Module
    guide: nn.Module
    image_shape: tuple[int, ...]
    x: torch.Tensor  # (N, data_dim) test split
    labels: torch.Tensor | None  # (N,), None for unlabelled data
    site: str  # the latent site
    z: torch.Tensor  # (N, D) E_q[z | x]
    batch_size: int  # evaluation chunk size

    def kl(self) -> torch.Tensor:
        """``(D,)`` KL per latent dimension over the test split."""
        kl = kl_per_dim(self.model, self.guide, self.x.split(self.batch_size)).get(self.site)
        if kl is None:
            raise ValueError(f"latent site {self.site!r} has no analytic KL per dimension (not factorized Normal)")
        return kl


def _test_set(run_dir: Path, o: PlotOptions) -> EncodedTestSplit:
    run = load_run(run_dir, o.device, model_file=o.model_file)
    data = load_run_data(run.config, o.device)
    x, batch_size = data.split("test"), run.config.train.eval_batch_size
    site, z = latent_space.encode(run.guide, x.split(batch_size), site=o.site)
    return EncodedTestSplit(run.model, run.guide, run.image_shape, x, data.labels.get("test"), site, z, batch_size)


def _samples(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    return plots.samples_figure(t.model, t.image_shape, temperature=o.temperature, site=t.site)


def _reconstructions(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    return plots.reconstructions_figure(t.model, t.guide, t.x[:64], t.image_shape)


def _latent_map(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    with torch.random.fork_rng(devices=[t.x.device] if t.x.device.type == "cuda" else []):
        deterministic = t.site not in stochastic_latents(t.guide, t.x[:2])  # a point-mass guide: codes f(x)
    prior = None
    if o.prior_contours:
        factors = latent_space.prior_factors(t.model, site=t.site)  # batch (1, D)
        prior = (factors.mean[0], factors.stddev[0])
    return latent_figures.latent_map_figure(t.z, t.labels, site=t.site, deterministic=deterministic, prior=prior)


def _manifold(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    return latent_figures.manifold_figure(t.model, t.image_shape, site=t.site)


def _interpolate(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    pairs = torch.randperm(t.x.shape[0], generator=torch.Generator().manual_seed(PAIR_SEED))[: 2 * PAIRS]
    x0, x1 = t.x[pairs.to(t.x.device)].split(PAIRS)
    return latent_figures.interpolate_figure(t.model, t.guide, x0, x1, t.image_shape, site=t.site)


def _traverse(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    return latent_figures.traverse_figure(t.model, t.guide, t.x[:1], t.kl(), t.image_shape, site=t.site)


def _arithmetic(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    if t.labels is None:
        raise ValueError("arithmetic needs class labels and this run's data set has none (try mnist-5k)")
    return latent_figures.arithmetic_figure(t.model, t.z, t.labels, o.triples, t.image_shape, site=t.site)


def _kl_per_dim(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    return plots.kl_per_dim_figure(t.kl(), unit_activity(t.z), site=t.site)


def _curves(run_dir: Path) -> Figure:
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        raise UsageError(f"{metrics}: not found; curves need a run directory made by pyrovae train")
    table = _read_table(metrics, METRIC_COLUMNS, f"rerun pyrovae train --out {run_dir} --resume to rewrite it")
    if table.empty:
        raise UsageError(f"{metrics}: no completed epoch yet; train on with pyrovae train --out {run_dir} --resume")
    _check_against_checkpoint(table, metrics, run_dir / CHECKPOINT)
    bounds = run_dir / "bounds.csv"
    fix = f"delete it, or rerun pyrovae evaluate {run_dir} to rewrite it"
    return plots.curves_figure(table, _read_table(bounds, BOUND_COLUMNS, fix) if bounds.is_file() else None)


def _check_against_checkpoint(table: pd.DataFrame, metrics: Path, checkpoint: Path) -> None:
    """``metrics.csv`` holds the epochs of the checkpoint's history (the record of what was trained), or a
    :class:`UsageError` says how they differ; without a checkpoint there is nothing to compare."""
    if not checkpoint.is_file():
        return
    history = pd.DataFrame(load_checkpoint(checkpoint)["trainer"]["history"])
    fix = f"pyrovae train --out {metrics.parent} --resume rewrites it from the checkpoint"
    if len(history) != len(table):
        raise UsageError(
            f"{metrics}: {len(table)} epochs, but {checkpoint} has {len(history)}; the file is stale or edited: {fix}"
        )
    for column in (c for c in METRIC_COLUMNS if c in history):  # rows of older runs may lack a column
        if not np.allclose(table[column].to_numpy(float), history[column].to_numpy(float), rtol=1e-9, atol=0):
            raise UsageError(f"{metrics}: column {column} disagrees with {checkpoint}; the file is edited: {fix}")


METRIC_COLUMNS = ("epoch", "train_elbo", "test_elbo", "reconstruction", "kl", "beta")  # what curves draw
BOUND_COLUMNS = ("k", "bound", "stderr")


def _read_table(path: Path, columns: tuple[str, ...], fix: str) -> pd.DataFrame:
    """A CSV file of a run with numeric ``columns``, or a :class:`UsageError` naming the file and ``fix``."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:  # pandas' EmptyDataError and ParserError are ValueErrors
        problem = " ".join(str(e).split())[:120] or type(e).__name__
        raise UsageError(f"{path}: not a readable table ({problem}); {fix}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UsageError(f"{path}: no column {', '.join(missing)}; not a table pyrovae wrote: {fix}")
    if not table.empty and not all(pd.api.types.is_numeric_dtype(table[c]) for c in columns):
        raise UsageError(f"{path}: non-numeric values in {', '.join(columns)}; the file is damaged: {fix}")
    return table


DRAW: dict[str, Callable[[EncodedTestSplit, PlotOptions], Figure]] = {
    "samples": _samples,
    "reconstructions": _reconstructions,
    "latent-map": _latent_map,
    "manifold": _manifold,
    "interpolate": _interpolate,
    "traverse": _traverse,
    "arithmetic": _arithmetic,
    "kl-per-dim": _kl_per_dim,
}
KINDS = (*DRAW, "curves")


def plot_run(
    run_dir: str | Path, kind: str, *, out: str | Path | None = None, options: PlotOptions | None = None
) -> Path:
    """Draw figure ``kind`` of the run in ``run_dir`` into ``out`` (default ``RUN_DIR/KIND.png``); returns ``out``."""
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; choose from {', '.join(KINDS)}")
    run_dir, options = Path(run_dir), options or PlotOptions()
    fig = _curves(run_dir) if kind == "curves" else DRAW[kind](_test_set(run_dir, options), options)
    out = Path(out) if out else run_dir / f"{kind}.png"
    plots.save_figure(fig, out)
    return out
