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

from pyrovae.viz.latent_space import (
    INTERPOLATIONS,
    class_arithmetic,
    decode,
    interpolate,
    pca_2d,
    prior_quantiles,
    traverse,
)
from pyrovae.viz.plots import new_figure, show_grid

ImageShape = tuple[int, ...]  # (C, H, W) of one datapoint


def latent_map_figure(
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    site: str = "z",
    deterministic: bool = False,
    prior: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Figure:
    """Encodings in 2-D (z itself when D = 2, else its PCA projection), coloured by label when given.

    :param z: ``(N, D)`` encodings: posterior means E_q[z | x], or an autoencoder's codes f(x).
    :param deterministic: the encodings are the codes f(x) of a deterministic autoencoder,
        which has no posterior; the title says so.
    :param prior: the prior's per-dimension ``(loc, scale)``, each ``(2,)``: draws its
        1-sigma and 2-sigma contours (circles for N(0, I)), where prior draws land.
        Only for D = 2, the latent itself.
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
        ax.legend(title="label", markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    what = "Codes f(x) (deterministic autoencoder)" if deterministic else "Posterior means E_q[z | x]"
    ax.set_title(f"{what} of {len(points)} test images\n({how})")
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


def manifold_figure(model: Callable, image_shape: ImageShape, *, n: int = 21, site: str = "z") -> Figure:
    """Decoded means over an ``n`` x ``n`` grid of the prior's quantiles of a 2-D latent (Kingma & Welling, fig. 4).

    With an odd ``n`` (the default) the middle row and column sit at the prior's median, so the centre tick is 0.
    """
    q = prior_quantiles(model, n, site=site)  # (n, 2)
    if q.shape[-1] != 2:
        raise ValueError(f"manifold needs a 2-D latent, this run has D = {q.shape[-1]}; train with --latent-dim 2")
    z0, z1 = q[:, 0], q[:, 1].flip(0)  # columns: z[0] increasing; rows: z[1] decreasing downwards
    grid = torch.stack(torch.broadcast_tensors(z0[None, :], z1[:, None]), dim=-1).reshape(-1, 2)
    fig = new_figure(7, 7.5)
    ax = fig.add_subplot()
    show_grid(ax, decode(model, grid, site=site), image_shape, n)
    ax.set_axis_on()
    cell, shown = image_shape[-1] + 2, sorted({round(i * (n - 1) / 4) for i in range(5)})  # 2 px padding
    ticks = [cell * i + cell / 2 for i in shown]
    ax.set_xticks(ticks, [_tick(float(z0[i])) for i in shown])
    ax.set_yticks(ticks, [_tick(float(z1[i])) for i in shown])
    ax.set_xlabel(f"{site}[0] (prior quantiles 5% to 95%)")
    ax.set_ylabel(f"{site}[1]")
    ax.set_title("Decoded means E[x | z] over the 2-D latent")
    return fig


def interpolate_figure(
    model: Callable,
    guide: Callable,
    x0: torch.Tensor,
    x1: torch.Tensor,
    image_shape: ImageShape,
    *,
    steps: int = 8,
    site: str | None = None,
) -> Figure:
    """Linear and spherical interpolation between pairs of test images, framed by the images themselves."""
    fig = new_figure(6.5, 1.25 + 1.3 * x0.shape[0])
    for ax, how in zip(fig.subplots(2, 1), INTERPOLATIONS, strict=True):
        path = interpolate(model, guide, x0, x1, steps=steps, how=how, site=site)
        rows = torch.cat([x0[:, None], path, x1[:, None]], dim=1)  # (P, steps + 2, data_dim)
        show_grid(ax, rows.reshape(-1, x0.shape[-1]), image_shape, steps + 2, f"{how} interpolation of E_q[z | x]")
    fig.suptitle("Test image, decoded path from its encoding to the other's, test image")
    return fig


def traverse_figure(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    kl: torch.Tensor,
    image_shape: ImageShape,
    *,
    span: float = 3.0,
    site: str = "z",
) -> Figure:
    """One row per latent dimension, by decreasing KL: a sweep of z[u] over [-span, span], others fixed.

    Rows are labelled z[u] with u from 0, as in ``kl_per_dim.csv``.
    """
    values = torch.linspace(-span, span, 9)
    dims, images = traverse(model, guide, x, kl, values, site=site)
    fig = new_figure(6.5, 1.25 + 0.5 * len(dims))
    ax = fig.add_subplot()
    show_grid(ax, images.reshape(-1, x.shape[-1]), image_shape, len(values))
    ax.set_axis_on()
    cell = image_shape[-1] + 2
    ax.set_xticks([cell * i + cell / 2 for i in range(len(values))], [f"{v:g}" for v in values.tolist()])
    ax.set_yticks(
        [cell * i + cell / 2 for i in range(len(dims))], [f"{site}[{u}]  {float(kl[u]):.2f}" for u in dims.tolist()]
    )
    ax.tick_params(length=0)
    ax.set_xlabel("value of the swept dimension")
    ax.set_ylabel("dimension and its KL (nats)")
    ax.set_title("Latent traversals from one test image's encoding,\nrows by decreasing KL")
    return fig


def arithmetic_figure(
    model: Callable,
    z: torch.Tensor,
    labels: torch.Tensor,
    triples: Sequence[tuple[int, int, int]],
    image_shape: ImageShape,
    *,
    site: str = "z",
) -> Figure:
    """Decoded class means m_a, m_b, m_c and m_a - m_b + m_c, one row per triple (a, b, c)."""
    points = class_arithmetic(z, labels, triples)  # (rows, 4, D)
    fig = new_figure(5, 0.75 + 1.1 * len(triples))
    ax = fig.add_subplot()
    show_grid(ax, decode(model, points.reshape(-1, z.shape[-1]), site=site), image_shape, 4)
    ax.set_axis_on()
    cell = image_shape[-1] + 2
    ax.set_xticks([cell * i + cell / 2 for i in range(4)], ["mean a", "mean b", "mean c", "a - b + c"])
    ax.set_yticks([cell * i + cell / 2 for i in range(len(triples))], [f"{a} - {b} + {c}" for a, b, c in triples])
    ax.tick_params(length=0)
    ax.set_title("Class-mean latent arithmetic, decoded")
    return fig
