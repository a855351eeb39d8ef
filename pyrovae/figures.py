"""``pyrovae plot``: every figure of a run directory, by kind.

All kinds but ``curves`` load the run's model and guide and use the test split
of its data set (binarized once with a fixed seed, as for the test ELBO).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from pyrovae import latent, plots
from pyrovae.data import Dataset
from pyrovae.inference.diagnostics import kl_per_dim, unit_activity
from pyrovae.runs import LoadedRun, load_run, load_run_data

KINDS = (
    "samples",
    "reconstructions",
    "latent-map",
    "manifold",
    "interpolate",
    "traverse",
    "arithmetic",
    "curves",
    "kl-per-dim",
)
PAIRS = 5  # image pairs of the interpolate figure
ARITHMETIC_TRIPLES = ((7, 1, 4), (8, 0, 1), (9, 4, 3), (6, 0, 5))  # default (a, b, c): m_a - m_b + m_c
PAIR_SEED = 0  # fixed: the same test pairs in every figure of every run


def plot_run(
    run_dir: str | Path,
    kind: str,
    *,
    out: str | Path | None = None,
    temperature: float = 1.0,
    triples: Sequence[tuple[int, int, int]] | None = None,
    device: str = "auto",
) -> Path:
    """Draw figure ``kind`` of the run in ``run_dir`` into ``out`` (default ``RUN_DIR/KIND.png``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; choose from {', '.join(KINDS)}")
    run_dir = Path(run_dir)
    if kind == "curves":
        fig = _curves(run_dir)
    else:
        run = load_run(run_dir, device)
        fig = _figure(kind, run, load_run_data(run.config, device), temperature, triples or ARITHMETIC_TRIPLES)
    out = Path(out) if out else run_dir / f"{kind}.png"
    plots.save_figure(fig, out)
    return out


def _curves(run_dir: Path) -> Figure:
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: not found; curves need a run directory made by pyrovae train")
    bounds = run_dir / "bounds.csv"
    return plots.curves_figure(pd.read_csv(metrics), pd.read_csv(bounds) if bounds.is_file() else None)


def _figure(
    kind: str, run: LoadedRun, data: Dataset, temperature: float, triples: Sequence[tuple[int, int, int]]
) -> Figure:
    model, guide, shape = run.model, run.guide, run.image_shape
    test, labels = data.split("test"), data.labels.get("test")
    site, z = latent.encode(guide, test.split(run.config.train.eval_batch_size))  # z: (N, D) posterior means
    if kind == "samples":
        return plots.samples_figure(model, shape, temperature=temperature, site=site)
    if kind == "reconstructions":
        return plots.reconstructions_figure(model, guide, test[:64], shape)
    if kind == "latent-map":
        return latent.latent_map_figure(z, labels, site=site)
    if kind == "manifold":
        return latent.manifold_figure(model, shape, site=site)
    if kind == "interpolate":
        pairs = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(PAIR_SEED))[: 2 * PAIRS]
        x0, x1 = test[pairs.to(test.device)].split(PAIRS)
        return latent.interpolate_figure(model, guide, x0, x1, shape)
    if kind == "arithmetic":
        if labels is None:
            raise ValueError(f"arithmetic needs class labels; data set {data.name!r} has none (try mnist-5k)")
        return latent.arithmetic_figure(model, z, labels, triples, shape, site=site)
    kl = kl_per_dim(model, guide, test.split(run.config.train.eval_batch_size)).get(site)
    if kl is None:
        raise ValueError(f"latent site {site!r} has no analytic KL per dimension (not a factorized guide and prior)")
    if kind == "traverse":
        return latent.traverse_figure(model, guide, test[:1], kl, shape)
    return plots.kl_per_dim_figure(kl, unit_activity(z), site=site)
