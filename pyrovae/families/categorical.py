"""The categorical distribution over K classes: a discrete latent, or the likelihood of an observed label.

Its value is a class index per datapoint, event shape ``()``; later networks read it one-hot.
As a latent (a mixture component y ~ Cat(pi) of a GMVAE, q(y | x)) it is enumerated: Pyro sums
it out exactly (``TraceEnum_ELBO``; pyrovae's bounds sum it inside each weight). As an observed
label beside x (a joint model of image and label, ``[[observed]]`` in a spec) it is y ~ Cat(f(z)).
A parentless prior's ``logits`` default to 0: the uniform Cat(1/K).

References: D. P. Kingma, S. Mohamed, D. J. Rezende, M. Welling, "Semi-supervised Learning with Deep
Generative Models", NeurIPS 2014 (labels generated with the image); N. Dilokthanakul et al., "Deep
Unsupervised Clustering with Gaussian Mixture Variational Autoencoders", arXiv:1611.02648, 2016.
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
    roles = frozenset({"prior", "guide", "label"})  # a discrete latent, or the likelihood of an observed label
    capabilities = Capabilities(
        reparameterized=False,
        enumerable=True,
        has_mean=False,  # .mean of a class index is meaningless: diagnostics read E[one_hot(y)] = probs
        factorized=False,
        analytic_kl=frozenset({"categorical"}),
        support="class",
    )
    params = (Param("logits"),)

    def distribution(self, *, logits: torch.Tensor) -> dist.Distribution:
        return dist.Categorical(logits=logits)
