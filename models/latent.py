"""The one generative model function every pyrovae model runs: a :class:`~pyrovae.graph.LatentGraph`.

    z_l ~ p(z_l | pa(z_l))   for each latent l, parents first
    x   ~ p(x | pa(x))       observed

Latents without parents have the standard Normal prior; a VAE, a conditional VAE
(x's parents include a label y), a hierarchical VAE (z_1's parent is z_2) and
the autoencoder baselines (every latent masked out of the objective) differ
only in their nodes. :class:`pyrovae.models.VAE` is the one-latent case.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014;
Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (hierarchies);
K. Sohn, H. Lee, X. Yan, "Learning Structured Output Representation using Deep Conditional
Generative Models", NeurIPS 2015 (conditioning).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import pyro
import torch
import torch.nn.functional as F
from pyro.infer.util import is_validation_enabled
from torch import nn

from pyrovae.graph import LatentGraph, Node, check_mask, known_factor, label_input
from pyrovae.models.likelihoods import Likelihood, Observation
from pyrovae.primitives import data_plate, kl_scale


class LatentModel(LatentGraph):
    """p(x, z | inputs) as a Pyro model.

    :param latents: latent nodes, each after its parents.
    :param observation: the node of x; its conditional is an
        :class:`~pyrovae.models.likelihoods.Observation`.
    :param conditionals: module key -> conditional; parentless latents use
        :class:`~pyrovae.graph.StandardNormal`.
    :param inputs: conditioning inputs, name -> number of classes.
    :param autoencoder: mask the latents out of the objective (see :class:`LatentGraph`).
    :param labels: observed class labels besides x, each a node (with an
        :class:`~pyrovae.models.likelihoods.Observation`) and its number of classes: a
        label y ~ Categorical(f(z)) generated from the same latents as x.
    :param partial: partially observed categorical latents, name -> classes (M2's y, Kingma et
        al. 2014): where a datapoint's label is known, the factor log 1[y = label] keeps that value
        alone in the enumerated sum, so its terms are those of p(x, y = label); elsewhere y is summed.
    :param discrete: the categorical latents, name -> classes (a gmvae's y), which generation can be
        conditioned on (``pyrovae sample --label``).
    :param estimators: categorical latents trained other than enumerated (see :class:`LatentGraph`).
    """

    def __init__(
        self,
        latents: Sequence[Node],
        observation: Node,
        conditionals: Mapping[str, nn.Module],
        inputs: Mapping[str, int] | None = None,
        *,
        autoencoder: bool = False,
        labels: Sequence[tuple[Node, int]] = (),
        partial: Mapping[str, int] | None = None,
        discrete: Mapping[str, int] | None = None,
        estimators: Mapping[str, tuple[str, float]] | None = None,
    ) -> None:
        observed = {node.site: classes for node, classes in labels}
        nodes = [*latents, observation, *(node for node, _ in labels)]
        super().__init__(
            nodes,
            conditionals,
            inputs,
            autoencoder=autoencoder,
            observed=observed,
            partial=partial,
            estimators=estimators,
        )
        self.num_latents = len(latents)
        self.discrete = {**dict(discrete or {}), **self.partial}  # categorical latents, name -> classes
        for node in (observation, *(node for node, _ in labels)):
            if not isinstance(self.conditionals[node.module], Observation):
                raise ValueError(f"the observed node {node.site!r} needs an Observation conditional")
        if observation.site != "x":
            raise ValueError("the observation node must be the site 'x'")

    @property
    def latents(self) -> tuple[Node, ...]:
        """The latent nodes, in sampling order."""
        return self.nodes[: self.num_latents]

    @property
    def observation(self) -> Node:
        """The node of x."""
        return self.nodes[self.num_latents]

    @property
    def label_nodes(self) -> tuple[Node, ...]:
        """The nodes of the observed labels besides x (``observed``), in order."""
        return self.nodes[self.num_latents + 1 :]

    @property
    def observation_likelihood(self) -> Likelihood:
        """The family of p(x | parents)."""
        return self.conditionals[self.observation.module].likelihood

    def forward(
        self,
        x: torch.Tensor | None = None,
        *inputs: torch.Tensor,
        beta: float = 1.0,
        num_data: int | None = None,
        batch_size: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The Pyro model.

        :param x: observed minibatch ``(B, data_dim)``, or ``None`` to generate.
        :param inputs: the conditioning inputs named in ``inputs`` (e.g. labels ``(B,)``), then the
            observed labels named in ``observed`` (class indices ``(B,)``); leave those out to sample them.
            Each input is a sample site of its name (:func:`~pyrovae.graph.label_input`), so it can be left
            out and set by ``poutine.condition`` or ``poutine.do`` instead (or drawn uniformly).
        :param beta: weight of the KL term (beta-VAE); the latent sites are scaled by it.
        :param num_data: full data-set size N; the data plate then scales by N / B.
        :param batch_size: how many datapoints to generate when neither x nor an input is given.
        :param mask: x's visible dimensions, a boolean (or 0/1) tensor of x's shape: the log-density of x
            is that of the visible ones alone (an image with missing pixels; inpainting).
        :returns: the value of ``x`` (observed, or sampled when generating).
        """
        self.register()
        check_mask(x, mask)
        values = self.start(x, inputs, optional=True)
        given = x if x is not None else (inputs[0] if inputs else None)
        if given is None and batch_size is None:
            raise ValueError("give either x or batch_size")
        size = given.shape[0] if given is not None else batch_size
        device = given.device if given is not None else next(itertools.chain(self.buffers(), self.parameters())).device
        if x is not None and is_validation_enabled():
            self.observation_likelihood.check(x)
        observed = dict(zip(self.observed, inputs[len(self.inputs) :], strict=False))  # class indices (B,)
        known = self.known(inputs)
        with data_plate(size, num_data, device):
            for (name, classes), value in itertools.zip_longest(self.inputs.items(), inputs[: len(self.inputs)]):
                values[name] = label_input(name, classes, value, device)  # a site: conditioned or intervened on
            with kl_scale(self.beta(beta)):
                sampled = {node.site: self.sample(node, values) for node in self.latents}
            for site, labels in known.items():  # outside the KL's scale: a label is data, whatever beta
                pyro.factor(f"{site}_known", known_factor(sampled[site], labels))
            for node in self.label_nodes:  # y ~ p(y | pa(y)), observed where given; read by later nodes one-hot
                y = self.sample(node, values, obs=observed.get(node.site))
                values[node.site] = F.one_hot(y, self.observed[node.site]).to(torch.get_default_dtype())
            return self.sample(self.observation, values, obs=x, mask=mask)
