"""Building a spec's model and guide: its networks, conditionals and Pyro programs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pyrovae import families
from pyrovae.graph import Node
from pyrovae.guides import AmortizedGuide
from pyrovae.models.latent import LatentModel
from pyrovae.models.likelihoods import Likelihood, Observation
from pyrovae.nets import make_net
from pyrovae.spec.reader import is_int, load, order
from pyrovae.spec.tree import ModelSpec, SpecError


def _check_shape(spec: ModelSpec, data_dim: Any, image_shape: Any) -> int:
    """The size of x for :func:`build`: ``data_dim``, else the spec's ``x.size``; checked against both.

    :raises SpecError: (a ``ValueError``) for a ``data_dim`` that is not a positive integer,
        an ``image_shape`` of non-positive entries or whose product is not the size of x.
    """
    if data_dim is not None and not (is_int(data_dim) and data_dim > 0):
        raise SpecError(f"data_dim: expected a positive integer, got {data_dim!r}")
    data_dim = int(data_dim) if data_dim is not None else spec.data_dim
    if data_dim is None:
        raise SpecError("spec: x.size: missing; give the data size (or pass data_dim)")
    if spec.data_dim is not None and spec.data_dim != data_dim:
        raise SpecError(f"spec: x.size: {spec.data_dim}, but the data have {data_dim} dimensions")
    if image_shape is not None:
        shape = tuple(image_shape) if isinstance(image_shape, Sequence) else None
        if not shape or not all(is_int(n) and n > 0 for n in shape) or math.prod(shape) != data_dim:
            raise SpecError(
                f"image_shape: expected positive integers (C, H, W) whose product is the size of x, {data_dim}; "
                f"got {image_shape!r}"
            )
    if spec.arch == "conv" and image_shape is None:
        raise SpecError("spec: arch: 'conv' needs the image shape of the data (pass image_shape)")
    return data_dim


def check_label_classes(model: ModelSpec, labels: torch.Tensor | None, dataset: str) -> None:
    """The data's class labels fit the model's label input: every label in 0..K-1 for K classes.

    A model without a label input accepts any data. Called before training, so that a label
    beyond the one-hot encoding is named here rather than failing inside ``one_hot`` mid-run.

    :param labels: the class labels of every split the run reads (e.g. the splits' labels
        concatenated), or ``None`` when the data set has none.
    :param dataset: the data set's name, for the message.
    :raises SpecError: a label input but no labels, or labels outside 0..K-1.
    """
    for name, classes in model.labels:
        where = f"spec: inputs.{name} = {classes} classes, but data set {dataset!r}"
        if labels is None:
            raise SpecError(
                f"{where} has no labels; a label input needs a labelled data set (mnist-5k, mnist or fashion-mnist, "
                "or a data file with labels: train_labels and test_labels arrays, or a table's --label-column)"
            )
        if labels.numel() == 0:
            continue
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise SpecError(f"{where} has labels {low}..{high}; a class label is one of 0..{classes - 1}")
        if high >= classes:
            raise SpecError(f"{where} has labels {low}..{high}; give {name} = {high + 1}")


def build(
    spec: str | Path | Mapping[str, Any] | ModelSpec,
    *,
    data_dim: int | None = None,
    image_shape: Sequence[int] | None = None,
) -> tuple[LatentModel, AmortizedGuide]:
    """The model and guide a spec describes, on the CPU.

    Networks are created guide first, then model, each side in sampling order,
    so that a given seed gives the same initial weights as the hand-built
    ``NormalGuide(GaussianEncoder(...))`` and ``VAE(Decoder(...))``.

    :param spec: a spec file, a built-in name (:data:`BUILTIN`), a TOML table or a :class:`ModelSpec`.
    :param data_dim: size of x; defaults to the spec's ``x.size``.
    :param image_shape: ``(C, H, W)`` of x, needed by ``arch = "conv"``.
    :raises SpecError: an invalid spec, or arguments that do not fit it (see :func:`_check_shape`).
    """
    spec = load(spec)
    data_dim = _check_shape(spec, data_dim, image_shape)
    dims = {"x": data_dim, **dict(spec.labels), **{z.name: z.size for z in spec.latents}}
    inputs = dict(spec.inputs)
    image = image_shape if spec.arch == "conv" else None

    def conditional_of(family: families.Family, given: tuple[str, ...], size: int, hidden: tuple[int, ...]):
        in_dim = sum(dims[p] for p in given)
        net = make_net(
            in_dim, family.num_outputs(size), hidden, spec.activation, image_shape=image, reads_image=given[0] == "x"
        )
        return family.conditional(net, in_dim, size)

    model_order = order(spec.latents, "prior", set(inputs))
    guide_nodes, guide_modules = [], {}
    # The guide samples in the model's order wherever its own dependencies allow it: Pyro's
    # TraceMeanField_ELBO (mf-elbo) checks that a mean-field guide's sites come in the model's order.
    for z in order(spec.latents, "encoder", {"x", *inputs}, prefer=[z.name for z in model_order]):
        given = tuple(sorted(z.encoder.given, key=lambda p: p != "x"))  # x first: a conv net reads it first
        guide_nodes.append(Node(z.name, given, f"encoder_{z.name}"))
        family = spec.guide_family(z)
        if given[0] != "x" and "corruption" in family.options:  # only x is corrupted
            family = families.get(family.name, "guide")
        guide_modules[f"encoder_{z.name}"] = conditional_of(family, given, z.size, z.encoder.hidden)
    model_nodes, model_modules = [], {}
    for z in model_order:
        model_nodes.append(Node(z.name, z.prior.given, f"prior_{z.name}"))
        family = spec.prior_family(z)
        if z.prior.given:
            model_modules[f"prior_{z.name}"] = conditional_of(family, z.prior.given, z.size, z.prior.hidden)
            continue
        encoder = z.encoder.given == ("x",) and guide_modules[f"encoder_{z.name}"]  # q(z | x), for a VampPrior
        context = {"guide": encoder or None, "data_dim": data_dim, "image_shape": image_shape}
        values = {k: v for k, v in z.prior.settings if k not in family.option_defaults}
        try:
            model_modules[f"prior_{z.name}"] = family.free(z.size, values, learn=z.prior.learn, context=context)
        except ValueError as e:
            raise SpecError(f"spec: latent {z.name!r}: prior: {e}") from None
    out_dim = spec.likelihood.params_per_pixel * data_dim
    decoder = make_net(
        sum(dims[p] for p in spec.x.given),
        out_dim,
        spec.x.hidden,
        spec.activation,
        image_shape=image,
        writes_image=True,
    )
    model_modules["decoder"] = Observation(decoder, spec.likelihood)
    label_nodes = []
    for o in spec.observed:  # y ~ Categorical(f(parents))
        net = make_net(sum(dims[p] for p in o.net.given), o.classes, o.net.hidden, spec.activation)
        model_modules[f"decoder_{o.name}"] = Observation(net, Likelihood("categorical", role="label"))
        label_nodes.append((Node(o.name, o.net.given, f"decoder_{o.name}"), o.classes))
    autoencoder = spec.deterministic
    x = Node("x", spec.x.given, "decoder")
    partial = {z.name: z.size for z in spec.latents if z.partial}
    estimators = {z.name: (z.estimator, z.temperature) for z in spec.latents if z.estimator != "enumerate"}
    baselines = {  # NVIL's input-dependent baseline b(parents) of each score-function latent, an MLP of its encoder's
        z.name: make_net(sum(dims[p] for p in z.encoder.given), 1, z.encoder.hidden, spec.activation)
        for z in spec.latents
        if z.estimator == "score"
    }
    discrete = {z.name: z.size for z in spec.latents if spec.prior_family(z).capabilities.support == "class"}
    model = LatentModel(
        model_nodes,
        x,
        model_modules,
        inputs,
        autoencoder=autoencoder,
        labels=label_nodes,
        partial=partial,
        discrete=discrete,
        estimators=estimators,
    )
    observed = {o.name: o.classes for o in spec.observed}
    guide = AmortizedGuide(
        guide_nodes,
        guide_modules,
        inputs,
        autoencoder=autoencoder,
        observed=observed,
        partial=partial,
        estimators=estimators,
        baselines=baselines,
    )
    return model, guide
