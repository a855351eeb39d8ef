"""``pyrovae plot``: every figure of a run directory, by kind.

All kinds but ``curves`` load the run's model and guide and use the test split
of its data set (binarized once with a fixed seed, as for the test ELBO).

A model with a label input (a cvae: p(x | z, y), q(z | x, y)) is drawn with its
encoder reading each test image with its own label. ``PlotOptions.label`` (``--label``)
decodes every figure with y = that class, and restricts the figures that decode
nothing (``latent-map``, ``kl-per-dim``) to the test images of that class; without
it ``samples`` draws one row per class, ``manifold`` one panel per class, ``interpolate``
pairs of one class decoded with their class, ``arithmetic`` each class mean with its
class (m_a - m_b + m_c with a), and the rest decode each test image with its own label.
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
from pyrovae.inference.clustering import categorical_sites, cluster_assignments
from pyrovae.inference.diagnostics import kl_per_dim, stochastic_latents, unit_activity
from pyrovae.store import load_run, load_run_data
from pyrovae.validate import ANY_SITE, CURVES_LABEL, UsageError, check_label
from pyrovae.viz import latent_figures, latent_space, plots
from pyrovae.viz.latent_space import Inputs

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
    colour_by: str | None = None  # latent-map: colour by argmax q(y | x) of this categorical latent; None: the labels
    label: int | None = None  # a model with a label input: decode with this class; None: each kind's default


class EncodedTestSplit(NamedTuple):
    """A loaded run and the posterior means of its test split."""

    model: nn.Module
    guide: nn.Module
    image_shape: tuple[int, ...]
    x: torch.Tensor  # (N, data_dim) test split
    labels: torch.Tensor | None  # (N,), None for unlabelled data
    site: str  # the latent site
    z: torch.Tensor  # (N, D) E_q[z | x], or E_q[z | x, y] with each image's own label
    batch_size: int  # evaluation chunk size
    given: Inputs = ()  # the labels the guide reads with x, (labels,) for a model with labels; else ()

    def batches(self) -> list[tuple[torch.Tensor, ...]]:
        """The test split in chunks, each ``(x, *given)``."""
        return list(zip(*(v.split(self.batch_size) for v in (self.x, *self.given)), strict=True))

    def kl(self) -> torch.Tensor:
        """``(D,)`` KL per latent dimension over the test split."""
        kl = kl_per_dim(self.model, self.guide, self.batches()).get(self.site)
        if kl is None:
            raise ValueError(f"latent site {self.site!r} has no analytic KL per dimension (not factorized Normal)")
        return kl

    @property
    def label_input(self) -> tuple[str, int] | None:
        """The model's label input, its name and number of classes (``("y", 10)`` for a cvae), or ``None``."""
        inputs = getattr(self.model, "inputs", None) or {}
        return next(iter(inputs.items()), None)

    def of_class(self, label: int) -> EncodedTestSplit:
        """The test images of class ``label`` alone."""
        if self.labels is None or not bool((self.labels == label).any()):
            raise UsageError(f"--label {label}: no test image of this run has that label")
        keep = self.labels == label
        given = tuple(v[keep] for v in self.given)
        return self._replace(x=self.x[keep], labels=self.labels[keep], z=self.z[keep], given=given)

    def decode_with(self, labels: torch.Tensor, label: int | None) -> Inputs:
        """The model's inputs to decode rows of class ``labels`` with: those, or class ``label`` where given;
        ``()`` for a model without a label input."""
        if self.label_input is None:
            return ()
        return (torch.full_like(labels, label) if label is not None else labels,)


def _test_set(run_dir: Path, o: PlotOptions, any_site: bool = False) -> EncodedTestSplit:
    run = load_run(run_dir, o.device, model_file=o.model_file)
    check_label(run.model.inputs, o.label)
    data = load_run_data(run.config, o.device)
    x, batch_size = data.split("test"), run.config.train.eval_batch_size
    labels = data.labels.get("test")
    labels = None if labels is None else labels.to(x.device)
    given = (labels,) if run.model.labels and labels is not None else ()
    batches = zip(*(v.split(batch_size) for v in (x, *given)), strict=True)
    site, z = latent_space.encode(run.guide, batches, site=o.site, first=any_site)
    return EncodedTestSplit(run.model, run.guide, run.image_shape, x, labels, site, z, batch_size, given)


def _samples(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    kwargs = {"temperature": o.temperature, "site": t.site}
    if t.label_input is None:
        return plots.samples_figure(t.model, t.image_shape, **kwargs)
    name, classes = t.label_input
    if o.label is not None:
        labels, note, rows = torch.full((64,), o.label), f"decoded with {name} = {o.label}", ()
    else:
        labels, note = torch.arange(classes).repeat_interleave(8), f"8 of each class, one row per class {name}"
        rows = [f"{name} = {c}" for c in range(classes)]
    inputs = (labels.to(t.x.device),)
    return plots.samples_figure(t.model, t.image_shape, inputs=inputs, note=note, row_names=rows, **kwargs)


def _reconstructions(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    x, given = t.x[:64], tuple(v[:64] for v in t.given)
    if t.label_input is None:
        return plots.reconstructions_figure(t.model, t.guide, x, t.image_shape, given=given)
    name, inputs, note = t.label_input[0], None, f"each image with its own {t.label_input[0]}"
    if o.label is not None:
        inputs, note = t.decode_with(t.labels[:64], o.label), f"decoded with {name} = {o.label}, q with x's own {name}"
    title = f"Reconstructions E[x | z, {name}], z ~ q(z | x, {name})"
    return plots.reconstructions_figure(
        t.model, t.guide, x, t.image_shape, given=given, inputs=inputs, title=title, note=note
    )


def _latent_map(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    note = ""
    if t.label_input is not None:
        name = t.label_input[0]
        note = f"q(z | x, {name}), each image with its own {name}"
        if o.label is not None:
            t, note = t.of_class(o.label), f"{note}; only the images with {name} = {o.label}"
    with torch.random.fork_rng(devices=[t.x.device] if t.x.device.type == "cuda" else []):
        first = (t.x[:2], *(v[:2] for v in t.given))
        deterministic = t.site not in stochastic_latents(t.guide, *first)  # a point-mass guide: codes f(x)
    prior = None
    if o.prior_contours:
        factors = latent_space.prior_factors(t.model, site=t.site, inputs=_prior_inputs(t, o))  # batch (1, D)
        prior = (factors.mean[0], factors.stddev[0])
    colours, title = t.labels, "label"
    if o.colour_by is not None:  # the guide's own clusters: argmax q(y | x), with the labels the guide reads
        discrete = categorical_sites(t.guide, *first)
        if o.colour_by not in discrete:
            raise UsageError(
                f"--colour-by {o.colour_by}: not a categorical latent of this model (it has {discrete or 'none'})"
            )
        colours = cluster_assignments(t.guide, zip(*(v.split(t.batch_size) for v in (t.x, *t.given)), strict=True),
                                      site=o.colour_by)  # fmt: skip
        title = f"argmax q({o.colour_by} | x)"
    return latent_figures.latent_map_figure(
        t.z, colours, site=t.site, deterministic=deterministic, prior=prior, note=note, colour_title=title
    )


def _prior_inputs(t: EncodedTestSplit, o: PlotOptions) -> Inputs:
    """The inputs of one datapoint for the prior of ``t.site``: ``--label``'s class, or any when it reads none."""
    if t.label_input is None:
        return ()
    name = t.label_input[0]
    node = next((n for n in getattr(t.model, "latents", ()) if n.site == t.site), None)
    if o.label is None and node is not None and name in node.parents:
        raise UsageError(f"the prior of {t.site} reads {name}: its contours need a class (--label)")
    return (torch.tensor([o.label or 0], device=t.x.device),)


def _manifold(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    if t.label_input is None:
        return latent_figures.manifold_figure(t.model, t.image_shape, site=t.site)
    name, classes = t.label_input
    one = [(torch.tensor([c], device=t.x.device),) for c in range(classes)]
    if o.label is not None:
        note = f"decoded with {name} = {o.label}"
        return latent_figures.manifold_figure(t.model, t.image_shape, site=t.site, inputs=one[o.label], note=note)
    names = [f"{name} = {c}" for c in range(classes)]
    return latent_figures.class_manifolds_figure(t.model, t.image_shape, one, names, site=t.site)


def _interpolate(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    by_class = t.labels.cpu() if t.label_input is not None else None  # a cvae: pairs of one class
    i0, i1 = (i.to(t.x.device) for i in latent_space.image_pairs(len(t.x), PAIRS, labels=by_class, seed=PAIR_SEED))
    x0, x1 = ((t.x[i], *(v[i] for v in t.given)) for i in (i0, i1))
    inputs, note = (), ""
    if t.label_input is not None:
        name, inputs = t.label_input[0], t.decode_with(t.labels[i0], o.label)
        chosen = f"{name} = {o.label}" if o.label is not None else f"their {name}"
        note = f"pairs of one class, decoded with {chosen}"
    return latent_figures.interpolate_figure(
        t.model, t.guide, x0, x1, t.image_shape, site=t.site, inputs=inputs, note=note
    )


def _traverse(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    x, inputs, note = (t.x[:1], *(v[:1] for v in t.given)), (), ""
    if t.label_input is not None:
        name, own = t.label_input[0], int(t.labels[0])
        inputs = t.decode_with(t.labels[:1], o.label)
        note = f"decoded with {name} = {o.label}" if o.label is not None else f"decoded with its own {name} = {own}"
    return latent_figures.traverse_figure(
        t.model, t.guide, x, t.kl(), t.image_shape, site=t.site, inputs=inputs, note=note
    )


def _arithmetic(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    if t.labels is None:
        raise ValueError("arithmetic needs class labels and this run's data set has none (try mnist-5k)")
    inputs, note = (), ""
    if t.label_input is not None:
        name = t.label_input[0]
        inputs = (latent_space.arithmetic_labels(o.triples, o.label).reshape(-1).to(t.x.device),)
        note = (
            f"every point decoded with {name} = {o.label}"
            if o.label is not None
            else f"each mean decoded with its class {name}, a - b + c with a"
        )
    return latent_figures.arithmetic_figure(
        t.model, t.z, t.labels, o.triples, t.image_shape, site=t.site, inputs=inputs, note=note
    )


def _kl_per_dim(t: EncodedTestSplit, o: PlotOptions) -> Figure:
    split = "test set"
    if o.label is not None:
        t, split = t.of_class(o.label), f"test images of class {o.label}"
    return plots.kl_per_dim_figure(t.kl(), unit_activity(t.z), site=t.site, split=split)


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
    for column in (c for c in (*METRIC_COLUMNS, "valid_elbo") if c in history):  # older runs may lack a column
        saved, written = history[column].to_numpy(float), table[column].to_numpy(float)
        if not np.allclose(written, saved, rtol=1e-9, atol=0, equal_nan=True):
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
    if kind == "curves" and options.label is not None:
        raise UsageError(CURVES_LABEL)
    # Reconstructions pass x through every latent: any one will do to encode, so several need no --site.
    fig = _curves(run_dir) if kind == "curves" else DRAW[kind](_test_set(run_dir, options, kind in ANY_SITE), options)
    out = Path(out) if out else run_dir / f"{kind}.png"
    plots.save_figure(fig, out)
    return out
