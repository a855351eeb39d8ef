"""Latent-variable graphs: what every pyrovae model and guide is made of.

A model or guide is an ordered list of :class:`Node` s. Each node is one Pyro
sample site whose distribution is a *conditional*, a module mapping the values
of the node's parents (x, a conditioning input such as a one-hot label, or
latents sampled earlier) to a distribution with event shape ``(size,)``. A VAE
is two nodes in the model (z from :class:`StandardNormal`, x from a decoder) and
one in the guide (z from :class:`DiagonalNormal`); a hierarchical VAE, a
conditional VAE or a user's TOML spec are other node lists over the same code.

Every node sits in the data plate (dim -1), so particle plates can sit at dim -2
and the per-datapoint log-weights of :mod:`pyrovae.inference` apply unchanged.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.nets import broadcast_cat


@dataclass(frozen=True)
class Node:
    """One sample site of a model or guide.

    :param site: the Pyro site name, also the name its value goes by for later nodes.
    :param parents: names of the values its conditional reads, in order: ``"x"``,
        a conditioning input, or a latent sampled by an earlier node.
    :param module: key of its conditional in the graph's ``conditionals`` (and the
        ``pyro.module`` name its parameters are stored under).
    """

    site: str
    parents: tuple[str, ...]
    module: str


class StandardNormal(nn.Module):
    """The parentless prior N(0, I) over a ``size``-vector (batch shape ``()``: plates broadcast it)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        # Buffers, so that the prior follows ``.to(device)`` with the networks.
        self.register_buffer("loc", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class DiagonalNormal(nn.Module):
    """The conditional N(mu(parents), diag sigma(parents)^2), reparameterized.

    :param encoder: network mapping the parents to ``(loc, scale)``, e.g. a
        :class:`pyrovae.nets.GaussianEncoder`.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, *parents: torch.Tensor) -> dist.Distribution:
        loc, scale = self.encoder(*parents)
        return dist.Normal(loc, scale).to_event(1)


class LatentGraph(nn.Module):
    """Nodes sampled in order, inside the data plate; the common part of model and guide.

    :param nodes: the sample sites, each after the nodes it reads.
    :param conditionals: module key -> conditional (``(*parents) -> Distribution``).
    :param inputs: conditioning inputs, name -> number of classes; they are passed
        as class indices ``(B,)`` (or one-hot rows ``(B, classes)``) positionally after x.
    :param autoencoder: mask every latent site out of the objective (beta = 0
        whatever beta is passed), for the autoencoder baselines.
    :param observed: observed class labels besides x, name -> number of classes
        (a label y generated from z); passed as class indices after the inputs, and
        left out when generating (the model then samples them).
    :param partial: partially observed discrete latents, name -> number of classes (M2's y):
        passed as class indices after the observed labels, -1 where unknown; a known value
        pins the latent there (:meth:`sample`'s ``known``), an unknown one is enumerated.
    :param estimators: discrete latents trained other than enumerated, name -> ``(estimator,
        temperature)``: ``relaxed`` or ``straight-through`` (:func:`relax`), or ``score`` (sampled: a
        score-function gradient, with NVIL's baseline where ``baselines`` has one, or VIMCO's). When not
        training, a categorical one is enumerated and binary units are sampled.
    :param baselines: name -> network of the node's parents to a scalar: NVIL's input-dependent
        baseline, which Pyro's ``TraceGraph_ELBO`` fits and subtracts (Mnih & Gregor, 2014).
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        conditionals: Mapping[str, nn.Module],
        inputs: Mapping[str, int] | None = None,
        *,
        autoencoder: bool = False,
        observed: Mapping[str, int] | None = None,
        partial: Mapping[str, int] | None = None,
        estimators: Mapping[str, tuple[str, float]] | None = None,
        baselines: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        missing = sorted({n.module for n in nodes} - set(conditionals))
        if missing:
            raise ValueError(f"nodes use conditionals {missing} that are not given")
        self.nodes = tuple(nodes)
        self.conditionals = nn.ModuleDict(conditionals)
        self.inputs = dict(inputs or {})
        self.observed = dict(observed or {})
        self.partial = dict(partial or {})
        self.estimators = dict(estimators or {})
        self.baselines = nn.ModuleDict(baselines or {})
        self.autoencoder = autoencoder

    @property
    def labels(self) -> dict[str, int]:
        """Every class label a batch passes after x, in order: the inputs, the observed labels, the partly
        observed latents."""
        return {**self.inputs, **self.observed, **self.partial}

    def known(self, labels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The partly observed latents' labels among those passed (class indices, -1 where unknown)."""
        return dict(zip(self.partial, labels[len(self.inputs) + len(self.observed) :], strict=False))

    @property
    def probabilistic(self) -> bool:
        """False for an autoencoder: it has no density over x, so no ELBO, bound or log-likelihood."""
        return not self.autoencoder

    def register(self) -> None:
        """``pyro.module`` every conditional under its key."""
        for key, module in self.conditionals.items():
            pyro.module(key, module)
        for site, module in self.baselines.items():
            pyro.module(f"baseline_{site}", module)

    def start(
        self, x: torch.Tensor | None, labels: Sequence[torch.Tensor], *, optional: bool = False
    ) -> dict[str, torch.Tensor]:
        """The values nodes can read before any is sampled: x and the one-hot labels (the inputs, and the
        observed labels when given).

        :param optional: the inputs are sample sites the caller adds (a model's, :func:`label_input`), and may
            be left out; they are then not among the values returned.
        """
        if len(labels) not in (len(self.inputs), len(self.labels), *((0,) if optional else ())):
            names = ", ".join(self.inputs) or "nothing"
            observed = f" (then, to observe them, {', '.join(self.observed)})" if self.observed else ""
            raise ValueError(
                f"{type(self).__name__} conditions on {names}{observed}; pass exactly that after x, "
                f"got {len(labels)} labels"
            )
        values = {} if x is None else {"x": x}
        for (name, classes), value in zip(self.labels.items(), labels, strict=False):
            if name in self.partial or (optional and name in self.inputs):  # a latent, or a site: set later
                continue
            if not value.is_floating_point():
                value = F.one_hot(value, classes).to(torch.get_default_dtype())  # (B,) -> (B, classes)
            values[name] = value
        return values

    def sample(
        self,
        node: Node,
        values: dict[str, torch.Tensor],
        obs: torch.Tensor | None = None,
        *,
        known: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample (or observe) ``node`` given ``values`` and record its value there.

        A discrete latent (a categorical y, binary units h) is enumerated in parallel unless its estimator
        says otherwise, so that the objectives and bounds sum over its values exactly; later nodes read a
        class one-hot.

        :param known: a categorical latent's labels ``(B,)``, -1 where unknown: where known, the
            distribution is a point mass on the label (logits -1e30 elsewhere, finite so that a weight
            of 0 times them stays 0), so that the enumerated sum keeps the label alone.
        :param mask: of the value's shape: the dimensions where it is false are left out of the
            log-density (:func:`mask_event`).
        """
        module = self.conditionals[node.module]
        fn = module(*(values[p] for p in node.parents))
        if known is not None:
            fn = pin(fn, known)
        if mask is not None:
            fn = mask_event(fn, mask)
        estimator, temperature = self.estimators.get(node.site, ("enumerate", 0.0))
        if self.training and estimator in ("relaxed", "straight-through") and obs is None:  # a relaxed sample
            value = pyro.sample(node.site, relax(fn, temperature, estimator == "straight-through"))
            values[node.site] = value
            return value
        latent = obs is None and node.site != "x" and node.site not in self.observed  # not data being generated
        support = discrete_support(module) if latent else None
        # Enumerated: a latent trained so, and a categorical one whatever its estimator when evaluated (exact
        # bounds); a large binary layer trained otherwise is sampled when evaluated (importance-sampled).
        summed = support is not None and (estimator == "enumerate" or (support == "class" and not self.training))
        infer = {"enumerate": "parallel"} if summed else {}
        if self.training and estimator == "score" and obs is None:  # sampled; its gradient the score function's
            infer = self._baseline(node.site, [values[p] for p in node.parents])
        value = pyro.sample(node.site, fn, obs=obs, infer=infer)
        one_hot = support == "class"  # later networks read a class index one-hot; binary units as they are
        values[node.site] = F.one_hot(value, fn.logits.shape[-1]).to(fn.logits.dtype) if one_hot else value
        return value

    def _baseline(self, site: str, parents: list[torch.Tensor]) -> dict:
        """The ``infer`` of a score-function site: NVIL's baseline b(parents) ``(..., B)``, where there is one."""
        if site not in self.baselines:
            return {}
        net = self.baselines[site]
        return {"baseline": {"nn_baseline": lambda h: net(h).squeeze(-1), "nn_baseline_input": broadcast_cat(parents)}}

    def beta(self, beta: float) -> float:
        """The KL weight on the latent sites: 0 (masked) for the autoencoders."""
        return 0.0 if self.autoencoder else beta


DISCRETE = ("class", "binary")  # the supports of discrete latents (Capabilities.support): a class, binary units


def label_input(name: str, classes: int, value: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """A conditioning input (a cvae's label) as the sample site ``name``, returned one-hot ``(..., classes)``.

    The model is p(x | y): the site carries no density (it is masked), so bounds are those of x given y. As a
    site it is observed at ``value`` (class indices ``(B,)``), drawn uniformly when ``value`` is ``None``
    (generating), and ``poutine.condition`` / ``poutine.do`` set it as they set any site. A float ``value``
    (one-hot or soft rows, e.g. between two classes) is read as it is, with no site.
    """
    if value is not None and value.is_floating_point():
        return value
    uniform = dist.Categorical(logits=torch.zeros(classes, device=device)).mask(False)
    y = pyro.sample(name, uniform, obs=value)
    return F.one_hot(y, classes).to(torch.get_default_dtype())


def discrete_support(module: nn.Module) -> str | None:
    """``"class"`` or ``"binary"`` for the conditional of a discrete latent (a categorical or Bernoulli family),
    else ``None``."""
    family = getattr(module, "family", None)
    support = family.capabilities.support if family is not None and family.capabilities.enumerable else None
    return support if support in DISCRETE else None


def relax(fn: dist.Distribution, temperature: float, straight_through: bool) -> dist.Distribution:
    """The Concrete (Gumbel-softmax) relaxation of ``fn`` at ``temperature``: reparameterized samples on the
    simplex (a ``Categorical``) or in (0, 1)^D (binary units, ``Bernoulli(...).to_event(1)``), whose density
    the objectives use while training; ``straight_through``: the sample rounded to its one-hot class (its
    0/1 units) in the forward pass, the relaxed sample's gradient in the backward one.

    References: C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution", ICLR 2017; E. Jang, S. Gu,
    B. Poole, "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017 (the straight-through variant).
    """
    binary = isinstance(fn, dist.Independent)  # binary units: the binary Concrete of each
    logits = fn.base_dist.logits if binary else fn.logits
    t = torch.tensor(temperature, dtype=logits.dtype, device=logits.device)
    if binary:
        kind = dist.RelaxedBernoulliStraightThrough if straight_through else dist.RelaxedBernoulli
        return kind(t, logits=logits).to_event(1)
    kind = dist.RelaxedOneHotCategoricalStraightThrough if straight_through else dist.RelaxedOneHotCategorical
    return kind(t, logits=logits)


def check_mask(x: torch.Tensor | None, mask: torch.Tensor | None) -> None:
    """Raise a ``ValueError`` unless ``mask`` is ``None`` or a boolean or 0/1 tensor of observed ``x``'s shape."""
    if mask is None:
        return
    if x is None:
        raise ValueError("mask selects the visible dimensions of an observed x; give x with it (or drop mask)")
    if mask.shape != x.shape:
        raise ValueError(f"mask must have x's shape {tuple(x.shape)} (True where visible), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must be boolean or 0/1 (1 where x is visible)")


def mask_event(fn: dist.Distribution, mask: torch.Tensor) -> dist.Distribution:
    """``fn``, independent over its event dimension, with the dimensions where ``mask`` is false left out of its
    log-density: log p(x_visible | ...) = sum over the visible d of log p(x_d | ...).

    ``poutine.mask`` cannot do this: it masks a site's whole log-density per batch element, and x is one site
    whose event dimension holds every pixel. Here the factors are masked before they are summed.

    :raises ValueError: when ``fn`` does not factorize over its event dimension.
    """
    if not isinstance(fn, dist.Independent) or fn.reinterpreted_batch_ndims != 1:
        raise ValueError(
            f"a mask over x's dimensions needs a likelihood independent over them; {type(fn).__name__} is not"
        )
    return dist.Independent(fn.base_dist.mask(mask.bool()), 1)


PINNED = -1e30  # the log-probability of the values a known label rules out: 0 in exp, and 0 * PINNED = 0


def pin(fn: dist.Categorical, known: torch.Tensor) -> dist.Categorical:
    """``fn`` where the label ``known`` ``(B,)`` is -1, a point mass on the label elsewhere."""
    classes = fn.logits.shape[-1]
    point = (1 - F.one_hot(known.clamp(min=0), classes)).to(fn.logits.dtype) * PINNED  # 0 at the label
    return dist.Categorical(logits=torch.where((known >= 0)[..., None], point, fn.logits))


def known_factor(value: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """log 1[value == known] where ``known`` >= 0 (``PINNED`` for 0), 0 where unknown: ``(..., B)``."""
    return torch.where((known >= 0) & (value != known), PINNED, 0.0)
