"""Latent-space maths: encodings, interpolation (linear and spherical), traversals, class arithmetic, 2-D maps.

No matplotlib here: these are tensors, drawn by :mod:`pyrovae.viz.latent_figures`. Every tool
works through Pyro traces on a model/guide pair with one latent site (``"z"`` for the VAE):
encodings are the guide's posterior means E_q[z | x], and latent points are decoded by
conditioning the model's latent site on them. A conditional model (a cvae's p(x | z, y)) takes
its inputs after x, as :data:`Inputs`: the guide reads each image with its own labels (a batch
``(x, y)``), and the decoder reads the labels given to decode with (any class).

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (the 2-D manifold);
T. White, "Sampling Generative Networks", arXiv:1609.04468, 2016 (spherical interpolation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from pyro import poutine
from pyro.distributions import Distribution
from pyro.poutine.util import site_is_subsample

from pyrovae.errors import InputError
from pyrovae.inference.diagnostics import factors, posterior_means
from pyrovae.primitives import batch_args

FIGURE_SEED = 0  # figures of one run are comparable across epochs and resumptions
INTERPOLATIONS = ("linear", "spherical")
Batch = torch.Tensor | tuple[torch.Tensor, ...]  # x, or x and the labels the guide reads with it: (x, y)
Inputs = tuple[torch.Tensor, ...]  # a conditional model's inputs after x (class labels (N,)); () for a VAE


def repeat_inputs(inputs: Inputs, repeats: int) -> Inputs:
    """Every row of each input repeated ``repeats`` times in place: ``(N,)`` to ``(N * repeats,)``."""
    return tuple(v.repeat_interleave(repeats, dim=0) for v in inputs)


def encode(
    guide: Callable, batches: Iterable[Batch], *, site: str | None = None, first: bool = False
) -> tuple[str, torch.Tensor]:
    """A latent site of the guide and the posterior means of the data there, ``(N, D)``.

    :param batches: chunks of x, or ``(x, y)`` with the labels the guide reads.
    :param site: the latent to encode; ``None``: the guide's only one (a guide with several needs it named,
        unless ``first``: then the first it samples).
    """
    means = posterior_means(guide, batches)
    if site is None and len(means) != 1 and not first:
        raise ValueError(f"this guide has the latent sites {sorted(means)}; choose one (--site)")
    if site is not None and site not in means:
        raise ValueError(f"no latent site {site!r}; this guide has {sorted(means)}")
    site = site if site is not None else next(iter(means))
    return site, means[site]


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 - t) z0 + t z1 for endpoints ``(..., D)`` and fractions ``t`` ``(T,)``: ``(..., T, D)``."""
    t = t[:, None]
    return (1 - t) * z0[..., None, :] + t * z1[..., None, :]


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from z0 to z1 (White, 2016): ``(..., T, D)``.

    The direction follows the great circle, sin((1 - t) w) / sin w u0 + sin(t w) / sin w u1
    for unit vectors u0, u1 at angle w, and the norm moves linearly from |z0| to |z1|;
    with |z0| = |z1| this is White's slerp. The path keeps clear of the origin, where a
    Gaussian prior in D dimensions puts almost no mass, and, unlike the raw formula on
    vectors of unequal norms, it stays bounded when z0 and z1 point almost opposite
    ways. Parallel directions (sin w = 0) fall back to :func:`lerp` of the directions.
    """
    r0, r1 = z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True)  # (..., 1)
    u0, u1 = z0 / r0.clamp_min(1e-12), z1 / r1.clamp_min(1e-12)
    omega = torch.acos((u0 * u1).sum(-1).clamp(-1.0, 1.0))[..., None, None]  # (..., 1, 1)
    sin, t = torch.sin(omega), t[:, None]
    parallel = sin < 1e-6
    a = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / sin)
    b = torch.where(parallel, t, torch.sin(t * omega) / sin)
    return lerp(r0, r1, t[:, 0]) * (a * u0[..., None, :] + b * u1[..., None, :])


def interpolate(
    model: Callable,
    guide: Callable,
    x0: Batch,
    x1: Batch,
    *,
    steps: int = 8,
    how: str = "linear",
    site: str | None = None,
    inputs: Inputs = (),
) -> torch.Tensor:
    """Decoded means along the path between the encodings of ``x0`` and ``x1`` ``(P, data_dim)``.

    :param x0: the first images of the pairs, with the labels the guide reads (``(x0, y0)``) if any.
    :param inputs: a conditional model's inputs to decode each pair's path with, each ``(P,)``.
    :returns: ``(P, steps, data_dim)``; step 0 decodes E_q[z | x0] and the last E_q[z | x1].
    """
    if how not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {how!r}; choose from {INTERPOLATIONS}")
    site, z = encode(guide, [batch_args(x0), batch_args(x1)], site=site)
    pairs = z.shape[0] // 2
    path = (lerp if how == "linear" else slerp)(*z.split(pairs), torch.linspace(0, 1, steps, device=z.device))
    decoded = decode(model, path.reshape(-1, z.shape[-1]), site=site, inputs=repeat_inputs(inputs, steps))
    return decoded.reshape(pairs, steps, -1)


def traverse(
    model: Callable,
    guide: Callable,
    x: Batch,
    kl: torch.Tensor,
    values: torch.Tensor,
    *,
    site: str | None = None,
    inputs: Inputs = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sweep each latent dimension over ``values`` with the others at the encoding of ``x`` ``(1, data_dim)``.

    :param x: one image, with the labels the guide reads (``(x, y)``) if any.
    :param kl: ``(D,)`` KL per dimension; rows are ordered by it, largest first.
    :param inputs: a conditional model's inputs to decode every image with, each ``(1,)``.
    :returns: ``(dims, images)``: the dimension of each row ``(D,)`` and the decoded
        means ``(D, len(values), data_dim)``.
    """
    site, base = encode(guide, [x], site=site)  # (1, D)
    dims = kl.argsort(descending=True)
    z = base.expand(len(dims), len(values), -1).clone()  # (D rows, V values, D)
    z[torch.arange(len(dims)), :, dims] = values.to(z)
    points = z.reshape(-1, z.shape[-1])
    decoded = decode(model, points, site=site, inputs=repeat_inputs(inputs, points.shape[0]))
    return dims, decoded.reshape(len(dims), len(values), -1)


def class_arithmetic(z: torch.Tensor, labels: torch.Tensor, triples: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """Mean encodings m_a, m_b, m_c of classes a, b, c and m_a - m_b + m_c, per triple: ``(len(triples), 4, D)``."""
    missing = sorted({c for triple in triples for c in triple} - set(labels.tolist()))
    if missing:
        raise ValueError(f"classes {missing} do not occur in the labels; the data set has {labels.unique().tolist()}")
    mean = {int(c): z[labels == c].mean(0) for c in labels.unique()}
    return torch.stack([torch.stack([mean[a], mean[b], mean[c], mean[a] - mean[b] + mean[c]]) for a, b, c in triples])


def arithmetic_labels(triples: Sequence[tuple[int, int, int]], label: int | None = None) -> torch.Tensor:
    """The classes a label-conditioned decoder draws the points of :func:`class_arithmetic` with, ``(rows, 4)``:
    ``label`` everywhere, or by default each class mean with its own class and m_a - m_b + m_c with a (a's
    class, its mean code moved by c's minus b's)."""
    rows = [[label] * 4 if label is not None else [a, b, c, a] for a, b, c in triples]
    return torch.tensor(rows, dtype=torch.long)


def image_pairs(
    n: int, pairs: int, *, labels: torch.Tensor | None = None, seed: int = FIGURE_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i0, i1)`` of ``pairs`` pairs among ``n`` images, fixed by ``seed``.

    :param labels: ``(n,)`` classes: then each pair is two images of one class, one pair per class (at
        most ``pairs`` classes, in increasing order), so that a label-conditioned decoder draws the path
        between them with their class; ``None``: any two images.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if labels is None:
        i0, i1 = order[: 2 * pairs].split(pairs)
        return i0, i1
    first: dict[int, int] = {}
    found: dict[int, tuple[int, int]] = {}
    for i in order.tolist():
        c = int(labels[i])
        if c in found:
            continue
        if c in first:
            found[c] = (first[c], i)
            if len(found) == pairs:
                break
        else:
            first[c] = i
    if not found:
        raise ValueError("no class has two images to interpolate between")
    i0, i1 = zip(*(found[c] for c in sorted(found)), strict=True)
    return torch.tensor(i0), torch.tensor(i1)


def pca_2d(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``(N, D)`` points on their first two principal components: ``(N, 2)`` and the variance fractions."""
    centred = z - z.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:2].T, s[:2] ** 2 / (s**2).sum()


def prior_factors(model: Callable, *, site: str = "z", inputs: Inputs = ()) -> Distribution:
    """The model's prior at a latent ``site`` without latent parents, its factors with batch shape ``(1, D)``.

    :param inputs: a conditional model's inputs for one datapoint, each ``(1,)`` (a prior p(z | y) reads them).
    """
    with torch.random.fork_rng():
        return factors(poutine.trace(model).get_trace(None, *inputs, batch_size=1).nodes[site]["fn"])


@torch.no_grad()
def prior_quantiles(
    model: Callable, n: int, *, site: str = "z", low: float = 0.05, high: float = 0.95, inputs: Inputs = ()
) -> torch.Tensor:
    """``n`` evenly spaced quantiles in [low, high] of each coordinate of the prior: ``(n, D)``.

    :param inputs: as for :func:`prior_factors`.
    """
    prior = prior_factors(model, site=site, inputs=inputs)
    p = torch.linspace(low, high, n, device=prior.mean.device)[:, None]
    return prior.icdf(p.expand(n, prior.batch_shape[-1]))


@torch.no_grad()
def manifold(
    model: Callable, n: int, *, site: str = "z", inputs: Inputs = ()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded means over an ``n`` x ``n`` grid of the prior's quantiles of a 2-D latent (Kingma & Welling, fig. 4).

    :param inputs: a conditional model's inputs for one datapoint, each ``(1,)``: the prior's and every
        grid point's (a cvae's manifold of one class).
    :returns: ``(z0, z1, images)``: the grid's values of z[0] by column ``(n,)`` (increasing), of z[1] by
        row ``(n,)`` (decreasing downwards), and the decoded means ``(n * n, data_dim)``, row by row.
    """
    q = prior_quantiles(model, n, site=site, inputs=inputs)  # (n, 2)
    if q.shape[-1] != 2:
        raise ValueError(f"manifold needs a 2-D latent, this run has D = {q.shape[-1]}; train with --latent-dim 2")
    z0, z1 = q[:, 0], q[:, 1].flip(0)
    grid = torch.stack(torch.broadcast_tensors(z0[None, :], z1[:, None]), dim=-1).reshape(-1, 2)
    return z0, z1, decode(model, grid, site=site, inputs=repeat_inputs(inputs, n * n))


def tempered_samples(
    model: Callable, n: int = 64, *, temperature: float = 1.0, site: str = "z", inputs: Inputs = ()
) -> torch.Tensor:
    """Decoded means of ``n`` prior samples at ``temperature``, z = mean + T (z_prior - mean): ``(n, data_dim)``.

    :param inputs: a conditional model's inputs, one per sample (their length is then ``n``).
    """
    if temperature <= 0:
        raise ValueError(f"--temperature must be > 0, got {temperature}")
    n = inputs[0].shape[0] if inputs else n
    with torch.random.fork_rng():
        torch.manual_seed(FIGURE_SEED)
        prior = poutine.trace(model).get_trace(None, *inputs, batch_size=n).nodes[site]
        if temperature == 1:  # the draws themselves (a prior over codebook entries has no mean to temper towards)
            return decode(model, prior["value"], site=site, inputs=inputs)
        try:
            mean = prior["fn"].mean
        except NotImplementedError:  # a prior over codebook entries (a VQ-VAE's)
            raise InputError(
                f"--temperature {temperature:g} scales draws about the prior's mean, and the prior of {site} has none; "
                "use --temperature 1"
            ) from None
        return decode(model, mean + temperature * (prior["value"] - mean), site=site, inputs=inputs)


def decoded_mean(model: Callable, *args, guide: Callable | None = None, **kwargs) -> torch.Tensor:
    """E[x | z] at the model's observed site ``"x"``, with z from the prior or from ``guide``.

    Works for any Pyro model that names its data site ``"x"``: the model is run
    (replayed against the guide when one is given) and the mean of the
    distribution at ``"x"`` is returned, e.g. Bernoulli probabilities.
    """
    if guide is not None:
        model = poutine.replay(model, trace=poutine.trace(guide).get_trace(*args, **kwargs))
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    return trace.nodes[data_site(trace)]["fn"].mean


def data_site(trace: poutine.Trace) -> str:
    """The model's data site: ``"x"``, else the only sample site that ``poutine.uncondition`` turned
    into a draw (a prior predictive), else its only observed one (latents a figure conditions on
    are observed too, but never unconditioned).

    :raises ValueError: a trace with no such site, or several (name the data site ``x``).
    """
    if "x" in trace.nodes:
        return "x"
    sites = [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]
    observed = [s["name"] for s in sites if s["infer"].get("was_observed")] or [
        s["name"] for s in sites if s["is_observed"]
    ]
    if len(observed) != 1:
        raise ValueError(f"the model observes {observed or 'no site'}; name its data site 'x' to draw it")
    return observed[0]


def reconstruct(model: Callable, guide: Callable, x: Batch, *, inputs: Inputs | None = None) -> torch.Tensor:
    """E[x | z], z ~ q(z | x): ``(N, data_dim)``.

    :param x: the images, with the labels the guide reads (``(x, y)``) if any.
    :param inputs: a conditional model's inputs to decode with instead of x's own labels (a cvae's
        y = C: each image redrawn as class C), each ``(N,)``; ``None``: x's own.
    """
    x, *given = batch_args(x)
    guide_trace = poutine.trace(guide).get_trace(x, *given)
    replayed = poutine.replay(model, trace=guide_trace)
    return poutine.trace(replayed).get_trace(x, *(given if inputs is None else inputs)).nodes["x"]["fn"].mean


def decode(model: Callable, z: torch.Tensor, *, site: str = "z", inputs: Inputs = ()) -> torch.Tensor:
    """E[x | z] for given latents ``z`` ``(N, D)`` at the model's latent ``site``: ``(N, data_dim)``.

    :param inputs: a conditional model's inputs to decode with, each ``(N,)`` (a cvae's labels y).
    """
    return decoded_mean(poutine.condition(model, data={site: z}), None, *inputs, batch_size=z.shape[0])


def fixed_latents(
    n: int, latent_dim: int, *, seed: int = FIGURE_SEED, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``n`` standard-Normal latents ``(n, latent_dim)`` that depend only on ``seed``, not on any RNG state."""
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
