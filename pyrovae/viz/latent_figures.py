"""Figures of the latent space: the 2-D map of the encodings, the manifold, interpolations, traversals and
class arithmetic, drawn from the tensors of :mod:`pyrovae.viz.latent_space`.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (the 2-D manifold).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse

from pyrovae.primitives import batch_args
from pyrovae.viz.latent_space import (
    INTERPOLATIONS,
    Batch,
    Inputs,
    class_arithmetic,
    decode,
    interpolate,
    manifold,
    pca_2d,
    traverse,
)
from pyrovae.viz.plots import new_figure, show_grid, titled

ImageShape = tuple[int, ...]  # (C, H, W) of one datapoint


def latent_map_figure(
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    site: str = "z",
    deterministic: bool = False,
    prior: tuple[torch.Tensor, torch.Tensor] | None = None,
    note: str = "",
    colour_title: str = "label",
) -> Figure:
    """Encodings in 2-D (z itself when D = 2, else its PCA projection), coloured by label when given.

    :param colour_title: what ``labels`` are, for the legend (``label``, or ``argmax q(y | x)``).

    :param z: ``(N, D)`` encodings: posterior means E_q[z | x], or an autoencoder's codes f(x).
    :param deterministic: the encodings are the codes f(x) of a deterministic autoencoder,
        which has no posterior; the title says so.
    :param prior: the prior's per-dimension ``(loc, scale)``, each ``(2,)``: draws its
        1-sigma and 2-sigma contours (circles for N(0, I)), where prior draws land.
        Only for D = 2, the latent itself.
    :param note: a line under the title (e.g. which images, what the encoder reads).
    """
    if z.shape[-1] == 2:
        points, axes, how = z, (f"{site}[0]", f"{site}[1]"), "the latent itself, D = 2"
    else:
        if prior is not None:
            raise ValueError(
                f"prior contours need the latent itself (D = 2), not a PCA projection of D = {z.shape[-1]}"
            )
        points, explained = pca_2d(z)
        axes = tuple(
            f"principal component {i + 1} ({100 * float(e):.0f}% of variance)" for i, e in enumerate(explained)
        )
        how = f"PCA projection of D = {z.shape[-1]}"
    fig = new_figure(6.5, 5.5)
    ax = fig.add_subplot()
    points = points.cpu().numpy()
    if labels is None:
        ax.scatter(*points.T, s=6, alpha=0.6, color="C0")
    else:
        for c in labels.unique().tolist():
            ax.scatter(*points[(labels == c).cpu().numpy()].T, s=6, alpha=0.7, color=f"C{c % 10}", label=str(c))
    if prior is not None:
        _prior_contours(ax, *prior)
    if labels is not None:  # the axes' own legend, last: the layout makes room for it beside the axes
        ax.legend(title=colour_title, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    what = "Codes f(x) (deterministic autoencoder)" if deterministic else "Posterior means E_q[z | x]"
    ax.set_title(titled(f"{what} of {len(points)} test images\n({how})", note))
    return fig


def _prior_contours(ax: Axes, loc: torch.Tensor, scale: torch.Tensor) -> None:
    """The prior's 1- and 2-sigma ellipses (axis-aligned: a factorized prior) on equal axes, with their own legend."""
    (x0, y0), (sx, sy) = loc.tolist(), scale.tolist()
    lines = []
    for k, style, mass in ((1, "-", 39), (2, "--", 86)):  # a 2-D Normal's mass within k sigma: 1 - exp(-k^2 / 2)
        ellipse = Ellipse((x0, y0), 2 * k * sx, 2 * k * sy, fill=False, color="black", linestyle=style, linewidth=1.2)
        ax.add_patch(ellipse)
        lines.append(Line2D([], [], color="black", linestyle=style, label=f"prior {k} sigma ({mass}% of draws)"))
    ax.set_aspect("equal", adjustable="datalim")
    ax.update_datalim([(x0 - 2.2 * sx, y0 - 2.2 * sy), (x0 + 2.2 * sx, y0 + 2.2 * sy)])
    ax.autoscale_view()
    ax.add_artist(ax.legend(handles=lines, loc="upper left", fontsize="small", framealpha=0.9))  # kept by ax.legend()


def _tick(value: float) -> str:
    """A tick label to 2 decimals that never reads -0.00."""
    return f"{round(value, 2) + 0.0:.2f}"


def manifold_figure(
    model: Callable, image_shape: ImageShape, *, n: int = 21, site: str = "z", inputs: Inputs = (), note: str = ""
) -> Figure:
    """Decoded means over an ``n`` x ``n`` grid of the prior's quantiles of a 2-D latent (Kingma & Welling, fig. 4).

    With an odd ``n`` (the default) the middle row and column sit at the prior's median, so the centre tick is 0.

    :param inputs: a conditional model's inputs for every grid point, each ``(1,)`` (a cvae's class y).
    :param note: a line under the title (what the grid is decoded with).
    """
    fig = new_figure(7, 7.5 + (0.25 if note else 0))
    ax = fig.add_subplot()
    _manifold_panel(ax, *manifold(model, n, site=site, inputs=inputs), image_shape)
    ax.set_xlabel(f"{site}[0] (prior quantiles 5% to 95%)")
    ax.set_ylabel(f"{site}[1]")
    ax.set_title(titled("Decoded means E[x | z] over the 2-D latent", note))
    return fig


def class_manifolds_figure(
    model: Callable,
    image_shape: ImageShape,
    inputs: Sequence[Inputs],
    names: Sequence[str],
    *,
    n: int = 9,
    site: str = "z",
    columns: int = 5,
) -> Figure:
    """One manifold of a label-conditioned model per class, side by side: E[x | z, y] over the quantiles of
    z's prior (given the class, where the prior reads it) (Kingma et al., "Semi-supervised Learning with Deep
    Generative Models", NeurIPS 2014, fig. 1).

    :param inputs: each panel's model inputs, each ``(1,)`` (the class y = k).
    :param names: each panel's title, e.g. ``y = 3``.
    """
    rows = -(-len(inputs) // columns)
    fig = new_figure(2.5 * min(columns, len(inputs)), 1 + 2.75 * rows)
    axes = fig.subplots(rows, min(columns, len(inputs)), squeeze=False).reshape(-1)
    for ax, given, name in zip(axes, inputs, names, strict=False):
        _manifold_panel(ax, *manifold(model, n, site=site, inputs=given), image_shape, ticks=3)
        ax.set_title(name)
    for ax in axes[len(inputs) :]:
        ax.set_axis_off()
    fig.supxlabel(f"{site}[0] (prior quantiles 5% to 95%)")
    fig.supylabel(f"{site}[1]")
    fig.suptitle("Decoded means E[x | z, y] over the 2-D latent, one panel per class")
    return fig


def _manifold_panel(
    ax: Axes,
    z0: torch.Tensor,
    z1: torch.Tensor,
    images: torch.Tensor,
    image_shape: ImageShape,
    *,
    ticks: int = 5,
) -> None:
    """Draw the grid of :func:`~pyrovae.viz.latent_space.manifold` on ``ax``, ``ticks`` values of each axis."""
    n = len(z0)
    show_grid(ax, images, image_shape, n)
    ax.set_axis_on()
    cell, shown = image_shape[-1] + 2, sorted({round(i * (n - 1) / (ticks - 1)) for i in range(ticks)})  # 2 px pad
    centres = [cell * i + cell / 2 for i in shown]
    ax.set_xticks(centres, [_tick(float(z0[i])) for i in shown])
    ax.set_yticks(centres, [_tick(float(z1[i])) for i in shown])


def interpolate_figure(
    model: Callable,
    guide: Callable,
    x0: Batch,
    x1: Batch,
    image_shape: ImageShape,
    *,
    steps: int = 8,
    site: str | None = None,
    inputs: Inputs = (),
    note: str = "",
) -> Figure:
    """Linear and spherical interpolation between pairs of test images, framed by the images themselves.

    :param x0: the first images of the pairs, with the labels the guide reads (``(x0, y0)``) if any.
    :param inputs: a conditional model's inputs to decode each pair's path with, each ``(P,)``.
    :param note: a line under the title (what the paths are decoded with).
    """
    first, last = batch_args(x0)[0], batch_args(x1)[0]
    fig = new_figure(6.5, 1.25 + 1.3 * first.shape[0] + (0.25 if note else 0))
    for ax, how in zip(fig.subplots(2, 1), INTERPOLATIONS, strict=True):
        path = interpolate(model, guide, x0, x1, steps=steps, how=how, site=site, inputs=inputs)
        rows = torch.cat([first[:, None], path, last[:, None]], dim=1)  # (P, steps + 2, data_dim)
        show_grid(ax, rows.reshape(-1, first.shape[-1]), image_shape, steps + 2, f"{how} interpolation of E_q[z | x]")
    fig.suptitle(titled("Test image, decoded path from its encoding to the other's, test image", note))
    return fig


def traverse_figure(
    model: Callable,
    guide: Callable,
    x: Batch,
    kl: torch.Tensor,
    image_shape: ImageShape,
    *,
    span: float = 3.0,
    site: str = "z",
    inputs: Inputs = (),
    note: str = "",
) -> Figure:
    """One row per latent dimension, by decreasing KL: a sweep of z[u] over [-span, span], others fixed.

    Rows are labelled z[u] with u from 0, as in ``kl_per_dim.csv``.

    :param x: one test image, with the labels the guide reads (``(x, y)``) if any.
    :param inputs: a conditional model's inputs to decode every image with, each ``(1,)``.
    :param note: a line under the title (what the images are decoded with).
    """
    values = torch.linspace(-span, span, 9)
    dims, images = traverse(model, guide, x, kl, values, site=site, inputs=inputs)
    fig = new_figure(6.5, 1.25 + 0.5 * len(dims) + (0.25 if note else 0))
    ax = fig.add_subplot()
    show_grid(ax, images.reshape(-1, images.shape[-1]), image_shape, len(values))
    ax.set_axis_on()
    cell = image_shape[-1] + 2
    ax.set_xticks([cell * i + cell / 2 for i in range(len(values))], [f"{v:g}" for v in values.tolist()])
    ax.set_yticks(
        [cell * i + cell / 2 for i in range(len(dims))], [f"{site}[{u}]  {float(kl[u]):.2f}" for u in dims.tolist()]
    )
    ax.tick_params(length=0)
    ax.set_xlabel("value of the swept dimension")
    ax.set_ylabel("dimension and its KL (nats)")
    ax.set_title(titled("Latent traversals from one test image's encoding,\nrows by decreasing KL", note))
    return fig


def arithmetic_figure(
    model: Callable,
    z: torch.Tensor,
    labels: torch.Tensor,
    triples: Sequence[tuple[int, int, int]],
    image_shape: ImageShape,
    *,
    site: str = "z",
    inputs: Inputs = (),
    note: str = "",
) -> Figure:
    """Decoded class means m_a, m_b, m_c and m_a - m_b + m_c, one row per triple (a, b, c).

    :param inputs: a conditional model's inputs to decode the points with, row by row, each ``(4 * rows,)``
        (:func:`~pyrovae.viz.latent_space.arithmetic_labels`).
    :param note: a line under the title (what the points are decoded with).
    """
    points = class_arithmetic(z, labels, triples)  # (rows, 4, D)
    fig = new_figure(5, 0.75 + 1.1 * len(triples) + (0.25 if note else 0))
    ax = fig.add_subplot()
    show_grid(ax, decode(model, points.reshape(-1, z.shape[-1]), site=site, inputs=inputs), image_shape, 4)
    ax.set_axis_on()
    cell = image_shape[-1] + 2
    ax.set_xticks([cell * i + cell / 2 for i in range(4)], ["mean a", "mean b", "mean c", "a - b + c"])
    ax.set_yticks([cell * i + cell / 2 for i in range(len(triples))], [f"{a} - {b} + {c}" for a, b, c in triples])
    ax.tick_params(length=0)
    ax.set_title(titled("Class-mean latent arithmetic, decoded", note))
    return fig
