"""The categorical likelihood of a class label generated from the latents: y ~ Categorical(softmax(f(z))).

A second observed site beside x (a joint model of image and label, ``[[observed]]``
in a spec): its value is a class index per datapoint, event shape ``()``. Enumerable:
a later model may sum it out exactly where it is not observed.

References: D. P. Kingma, S. Mohamed, D. J. Rezende, M. Welling, "Semi-supervised Learning with Deep
Generative Models", NeurIPS 2014 (labels generated with the image).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyrovae.families import register
from pyrovae.families.base import Capabilities, Family, Param


@register
class Categorical(Family):
    """Categorical(logits = network output) over ``size`` classes; values are class indices 0..size-1."""

    name = "categorical"
    roles = frozenset({"label"})  # the likelihood of an observed label, not of x
    capabilities = Capabilities(reparameterized=False, enumerable=True, factorized=False, support="class")
    params = (Param("logits"),)

    def distribution(self, *, logits: torch.Tensor) -> dist.Distribution:
        return dist.Categorical(logits=logits)
