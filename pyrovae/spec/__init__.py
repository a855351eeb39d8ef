"""Declarative models: a latent-variable model and its guide from a TOML spec.

A spec names the latent layers (size, what the prior and the encoder of each
are conditioned on, their hidden widths), the conditioning inputs, the
likelihood of x and the network architecture; :func:`build` turns it into a
:class:`~pyrovae.models.latent.LatentModel` and an
:class:`~pyrovae.guides.amortized.AmortizedGuide`. The built-in families are
spec files in ``pyrovae/models/specs`` (:data:`BUILTIN`)::

    likelihood = "bernoulli"          # bernoulli | gaussian | learned-gaussian | continuous-bernoulli
    guide = "diag"                    # diag | full | delta (point mass: an autoencoder)
    [inputs]
    y = 10                            # a class label, one-hot over 10 classes
    [[latent]]
    name = "z"
    size = 20
    given = []                        # p(z | given); [] is N(0, I)
    encoder = { given = ["x", "y"], hidden = [400, 400] }   # q(z | given)
    [x]
    given = ["z", "y"]                # p(x | z, y)
    hidden = [400, 400]

Optional top-level keys: ``arch`` (mlp | conv), ``activation``, ``hidden`` (the
default widths of every network), ``obs_scale``, ``min_obs_scale``, ``corruption``
(with ``guide = "delta"``), ``description``; ``x.size`` fixes the data size.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from pyrovae.spec.builder import build, check_label_classes
from pyrovae.spec.options import to_table, with_options
from pyrovae.spec.reader import builtin_path, load, order, parse, read, tomllib
from pyrovae.spec.tree import ARCHS, BUILTIN, ESTIMATORS, LatentSpec, ModelSpec, NetSpec, ObservedSpec, SpecError

__all__ = [
    "ARCHS",
    "BUILTIN",
    "ESTIMATORS",
    "LatentSpec",
    "ModelSpec",
    "NetSpec",
    "ObservedSpec",
    "SpecError",
    "build",
    "builtin_path",
    "check_label_classes",
    "load",
    "order",
    "parse",
    "read",
    "to_table",
    "tomllib",
    "with_options",
]
