"""Figures of a trained model: decoded image grids, training curves and KL per latent dimension.

The run directory's own images (``samples.png``, ``reconstructions.png``, the
``--snapshot-epochs`` grids) are bare ``make_grid`` PNGs; the figures of
``pyrovae plot`` are matplotlib figures with titles and axis labels, sized in
quarter inches at :data:`DPI` so that every PNG has a whole, known pixel size.
Every file is written atomically.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014;
Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid, save_image

from pyrovae.checkpoint import atomic_write
from pyrovae.inference.diagnostics import ACTIVE_THRESHOLD
from pyrovae.viz.latent_space import FIGURE_SEED, Inputs, decoded_mean, reconstruct, tempered_samples

BOUND_COLOURS = ("C5", "C6", "C8", "C9")  # L_k lines: colours no other curve of the figure uses
DPI = 120  # with sizes in multiples of 1/4 inch, PNG sizes are whole pixels (30 px per 1/4 inch)


@torch.no_grad()
def _grid(images: torch.Tensor, image_shape: tuple[int, ...], nrow: int) -> torch.Tensor:
    """Flat images ``(N, C*H*W)`` as one ``(3, H', W')`` grid, 2 px white padding."""
    return make_grid(images.reshape(-1, *image_shape).cpu().float(), nrow=nrow, pad_value=1.0)


def save_grid(images: torch.Tensor, image_shape: tuple[int, ...], path: str | Path, nrow: int = 8) -> None:
    """Save rows of flat images ``(N, C*H*W)`` as one PNG grid."""
    grid = _grid(images, image_shape, nrow)
    atomic_write(path, lambda f: save_image(grid, f, format="png"))


def save_samples(
    model: Callable,
    image_shape: tuple[int, ...],
    path: str | Path,
    n: int = 64,
    *,
    inputs: tuple[torch.Tensor, ...] = (),
    **kwargs,
) -> None:
    """Decode ``n`` prior samples (the decoder's mean image, not a binary draw).

    :param inputs: a conditional model's inputs (e.g. labels ``(n,)``), one per sample.
    """
    with torch.random.fork_rng():
        torch.manual_seed(FIGURE_SEED)
        save_grid(decoded_mean(model, None, *inputs, batch_size=n, **kwargs), image_shape, path)


def save_reconstructions(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    image_shape: tuple[int, ...],
    path: str | Path,
    *,
    inputs: tuple[torch.Tensor, ...] = (),
    **kwargs,
) -> None:
    """Inputs ``x`` (rows of 8) interleaved with their reconstructions, row by row.

    :param inputs: a conditional model's inputs for the rows of ``x`` (e.g. their labels); rows beyond a
        multiple of 8 are left out (fewer than 8: one row of them all).
    """
    per_row = min(8, len(x))
    kept = len(x) // per_row * per_row
    x, inputs = x[:kept], tuple(i[:kept] for i in inputs)
    with torch.random.fork_rng():
        torch.manual_seed(FIGURE_SEED)
        recon = decoded_mean(model, x, *inputs, guide=guide, **kwargs)
    pairs = torch.stack([x.reshape(-1, per_row, x.shape[-1]), recon.reshape(-1, per_row, x.shape[-1])], dim=1)
    save_grid(pairs.reshape(-1, x.shape[-1]), image_shape, path)


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure (not tied to pyplot) of ``width`` x ``height`` inches, rounded up to 1/4 inch."""
    return Figure(figsize=(math.ceil(4 * width) / 4, math.ceil(4 * height) / 4), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as a PNG of exactly its size in pixels."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))


def show_grid(ax: Axes, images: torch.Tensor, image_shape: tuple[int, ...], nrow: int, title: str = "") -> None:
    """Draw flat images as a grid of ``nrow`` columns on ``ax``, without axes."""
    ax.imshow(_grid(images, image_shape, nrow).permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()


def label_rows(ax: Axes, image_shape: tuple[int, ...], names: Sequence[str]) -> None:
    """Name the rows of a grid that :func:`show_grid` drew on ``ax`` (e.g. ``y = 3``), a tick each."""
    cell = image_shape[-1] + 2  # 2 px padding
    ax.set_axis_on()
    ax.set_xticks([])
    ax.set_yticks([cell * i + cell / 2 for i in range(len(names))], names)
    ax.tick_params(length=0)


def titled(title: str, note: str = "") -> str:
    """A figure's ``title``, and ``note`` (e.g. the label it decodes with) on a line of its own."""
    return f"{title}\n{note}" if note else title


def samples_figure(
    model: Callable,
    image_shape: tuple[int, ...],
    *,
    n: int = 64,
    temperature: float = 1.0,
    site: str = "z",
    inputs: Inputs = (),
    note: str = "",
    row_names: Sequence[str] = (),
) -> Figure:
    """Decoded means of ``n`` prior samples at ``temperature``, 8 a row: z = mean + T (z_prior - mean).

    :param inputs: a conditional model's inputs, one per sample (e.g. labels y; their length is then ``n``).
    :param note: a line under the title (what the samples are conditioned on).
    :param row_names: a name for each row, e.g. the class it decodes (none: no row ticks).
    """
    images = tempered_samples(model, n, temperature=temperature, site=site, inputs=inputs)
    fig = new_figure(5, 0.25 + 0.625 * math.ceil(images.shape[0] / 8))  # 8 rows: 5.25 in
    ax = fig.add_subplot()
    show_grid(ax, images, image_shape, 8, titled(f"Decoded prior samples, temperature T = {temperature:g}", note))
    if row_names:
        label_rows(ax, image_shape, row_names)
    return fig


def reconstructions_figure(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    image_shape: tuple[int, ...],
    *,
    given: Inputs = (),
    inputs: Inputs | None = None,
    title: str = "Reconstructions E[x | z], z ~ q(z | x)",
    note: str = "",
) -> Figure:
    """Test images ``x`` (64 of them) beside their reconstructions E[x | z], z ~ q(z | x).

    :param given: the labels the guide reads with ``x`` (a cvae's y, each image's own).
    :param inputs: a conditional model's inputs to decode with instead of ``given`` (a cvae's y = C).
    :param title: the reconstructions' title; ``note``: a line under it (what they are decoded with).
    """
    with torch.random.fork_rng():
        torch.manual_seed(FIGURE_SEED)
        recon = reconstruct(model, guide, (x, *given), inputs=inputs)
    fig = new_figure(9.5, 5.25 + (0.25 if note else 0))
    data_ax, recon_ax = fig.subplots(1, 2)
    blank = " " if note else ""  # a second title line on both sides: the two grids stay level
    show_grid(data_ax, x, image_shape, 8, titled("Test images x", blank))
    show_grid(recon_ax, recon, image_shape, 8, titled(title, note))
    return fig


def _bound_label(row: pd.Series) -> str:
    """``L_k = bound ± stderr``, with the number of datapoints behind it when ``bounds.csv`` records it."""
    label = f"L_{int(row['k'])} = {row['bound']:.2f} ± {row['stderr']:.2f}"
    if "images" in row and pd.notna(row["images"]):
        split = row["split"] if "split" in row and pd.notna(row["split"]) else "test"
        return f"{label} ({int(row['images'])} {split} images)"
    return f"{label} (evaluate)"


def curves_figure(metrics: pd.DataFrame, bounds: pd.DataFrame | None = None) -> Figure:
    """ELBO, reconstruction, KL (with active units) and beta per epoch, from ``metrics.csv``.

    Every epoch is a marker, so a one-epoch run shows its points; the x axis has
    whole epochs only, and the legends sit outside the panels, clear of the data
    (the ELBO panel's at the foot of the figure).

    :param bounds: ``bounds.csv`` of ``pyrovae evaluate`` when present (columns ``k``,
        ``bound``, ``stderr``, and, when recorded, ``images``: the number of datapoints
        evaluated, and ``split``): the final model's L_k, drawn as horizontal lines.
    """
    fig = new_figure(9, 6.5)
    (elbo_ax, recon_ax), (kl_ax, beta_ax) = fig.subplots(2, 2, sharex=True)
    epoch = metrics["epoch"]
    style = {"marker": "o", "markersize": 3}
    elbo_ax.plot(epoch, metrics["train_elbo"], label="train ELBO", **style)
    valid = "valid_elbo" in metrics and metrics["valid_elbo"].notna().any()  # monitored in place of the test split
    heldout = "valid" if valid else "test"
    elbo_ax.plot(epoch, metrics[f"{heldout}_elbo"], label=f"{heldout} ELBO (whole split)", **style)
    elbo_values = [*metrics["train_elbo"], *metrics[f"{heldout}_elbo"]]
    for i, row in enumerate([] if bounds is None else (row for _, row in bounds.iterrows())):
        elbo_ax.axhline(
            row["bound"],
            color=BOUND_COLOURS[i % len(BOUND_COLOURS)],
            linestyle="--",
            linewidth=1,
            label=_bound_label(row),
        )
        elbo_values.append(row["bound"])
    _pad_y(elbo_ax, elbo_values)
    fig.legend(handles=elbo_ax.lines, loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    recon_ax.plot(epoch, metrics["reconstruction"], color="C2", **style)
    kl_ax.plot(epoch, metrics["kl"], color="C3", label="KL (train)", **style)
    if "active_units" in metrics:
        units_ax = kl_ax.twinx()
        units_ax.plot(
            epoch, metrics["active_units"], drawstyle="steps-mid", color="C7", label="active units (test)", **style
        )
        units_ax.set_ylabel("active units")
        units_ax.set_ylim(0, max(1, metrics["active_units"].max()) * 1.1)
        units_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _legend_above(kl_ax, kl_ax.lines + units_ax.lines)
    beta_ax.plot(epoch, metrics["beta"], color="C4", **style)
    beta_ax.set_ylim(0, 1.05 * max(1.0, metrics["beta"].max()))
    labels = ("ELBO (nats)", "E_q[log p(x | z)] (nats)", "KL(q(z | x) || p(z)) (nats)", "beta at epoch end")
    for ax, label in zip((elbo_ax, recon_ax, kl_ax, beta_ax), labels, strict=True):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    pad = max(0.5, 0.03 * float(epoch.max() - epoch.min()))  # one epoch: a point in the middle of the panel
    elbo_ax.set_xlim(epoch.min() - pad, epoch.max() + pad)  # shared by all four panels
    for ax in (elbo_ax, recon_ax, kl_ax, beta_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick, not 0.1 steps
    for ax in (kl_ax, beta_ax):
        ax.set_xlabel("epoch")
    fig.suptitle("Training curves (per datapoint)")
    return fig


def _pad_y(ax: Axes, values: list[float], margin: float = 0.08) -> None:
    """Y limits that hold every value with ``margin`` of the range to spare, so no line runs along the frame."""
    low, high = min(values), max(values)
    pad = margin * (high - low) if high > low else max(1.0, 0.01 * abs(high))
    ax.set_ylim(low - pad, high + pad)


def _legend_above(ax: Axes, handles: list) -> None:
    """A legend just above ``ax``, two short entries a row: it never hides the data."""
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0, 1.01, 1, 0.1),
        mode="expand",
        ncols=2,
        fontsize="small",
        borderaxespad=0,
        frameon=False,
    )


def kl_per_dim_figure(kl: torch.Tensor, activity: torch.Tensor, *, site: str = "z", split: str = "test set") -> Figure:
    """Average KL per latent dimension, sorted, beside each dimension's activity Cov_x(E_q[z[u]]).

    Dimensions are numbered from 0, z[0], z[1], ..., as in ``kl_per_dim.csv`` and every other figure.

    :param kl: ``(D,)`` KL per dimension (:func:`pyrovae.inference.diagnostics.kl_per_dim`).
    :param activity: ``(D,)`` activity (:func:`pyrovae.inference.diagnostics.unit_activity`).
    :param split: the images they are measured on, for the title (e.g. ``test images with y = 3``).
    """
    order = kl.argsort(descending=True)
    active = activity[order] > ACTIVE_THRESHOLD
    colours = ["C0" if a else "C7" for a in active.tolist()]
    names = [f"{u}" for u in order.tolist()]
    fig = new_figure(9, 4)
    kl_ax, activity_ax = fig.subplots(1, 2, sharex=True)
    kl_ax.bar(range(len(order)), kl[order].cpu().numpy(), color=colours)
    kl_ax.set_ylabel(f"KL(q({site}[u] | x) || p({site}[u])) (nats)")
    kl_ax.set_title(f"KL per dimension, {float(kl.sum()):.2f} nats in all")
    activity_ax.bar(range(len(order)), activity[order].cpu().numpy(), color=colours)
    activity_ax.axhline(ACTIVE_THRESHOLD, color="C3", linestyle="--", label=f"active threshold {ACTIVE_THRESHOLD}")
    activity_ax.set_yscale("log")
    activity_ax.set_ylabel(f"Cov_x(E_q[{site}[u] | x])")
    activity_ax.set_title(f"{int(active.sum())} of {len(order)} units active (blue)")
    activity_ax.legend()
    for ax in (kl_ax, activity_ax):
        ax.set_xticks(range(len(order)), names, fontsize="small")
        ax.set_xlabel(f"latent dimension u of {site}[u] (from 0), by decreasing KL")
    fig.suptitle(f"Posterior usage per latent dimension ({split})")
    return fig
