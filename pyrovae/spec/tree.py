"""The spec's tree: a validated model as frozen dataclasses, and the names a spec may not use."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyrovae import families
from pyrovae.errors import InputError
from pyrovae.graph import DISCRETE
from pyrovae.models.likelihoods import Likelihood

BUILTIN = ("vae", "cvae", "hvae", "ae", "dae", "gmvae", "m2")  # spec files shipped in pyrovae/models/specs
ARCHS = ("mlp", "conv")
ESTIMATORS = ("enumerate", "relaxed", "straight-through", "score")  # how a discrete latent is trained
DEFAULT_HIDDEN = (400, 400)
TOP_KEYS = {"description", "likelihood", "guide", "arch", "activation", "hidden", "obs_scale", "min_obs_scale"}
TOP_KEYS |= {"corruption", "inputs", "latent", "x", "observed"}
RESERVED = {"x", "data", "particles", "num_particles_vectorized"}  # x, and the names of pyrovae's and Pyro's plates


def is_discrete(family: str | None) -> bool:
    """Whether a guide family (a registry name; ``None``: the spec's default, continuous) is a discrete
    latent's: categorical (a class) or bernoulli (binary units)."""
    return family is not None and families.FAMILIES[family].capabilities.support in DISCRETE


class SpecError(InputError):
    """A spec is invalid; the message names the field and what it should be."""


@dataclass(frozen=True)
class NetSpec:
    """A conditional's parents, the hidden widths of its network, and its family with that family's settings."""

    given: tuple[str, ...] = ()  # the values it reads ("x", an input, a latent)
    hidden: tuple[int, ...] = DEFAULT_HIDDEN  # hidden widths (ignored when given is empty)
    family: str | None = None  # a name in pyrovae.families; None: the spec's default for the role
    settings: tuple[tuple[str, float], ...] = ()  # the family's options and, for a parentless prior, parameter values
    learn: bool = False  # a parentless prior's parameters are learned (the values are their start)


@dataclass(frozen=True)
class LatentSpec:
    """One latent layer: its site, size, prior p(z | ...) and encoder q(z | ...)."""

    name: str  # the Pyro site name
    size: int  # dimensions
    prior: NetSpec  # p(z | prior.given); a parentless prior (N(0, I) by default) when prior.given is empty
    encoder: NetSpec  # q(z | encoder.given)
    partial: bool = False  # partially_observed: a categorical latent whose label the data carry where known
    estimator: str = "enumerate"  # a discrete latent's gradient: enumerate | relaxed | straight-through | score
    temperature: float = 0.5  # relaxed, straight-through: the Concrete relaxation's temperature


@dataclass(frozen=True)
class ObservedSpec:
    """An observed class label besides x, generated from the latents: y ~ Categorical(f(parents))."""

    name: str  # the Pyro site name; the data set's labels are its values
    classes: int  # number of classes
    net: NetSpec  # its parents and hidden widths


@dataclass(frozen=True)
class ModelSpec:
    """A validated spec; latents in the file's order (see :func:`order` for the samplers' orders)."""

    latents: tuple[LatentSpec, ...]
    x: NetSpec  # p(x | x.given)
    likelihood: Likelihood = field(default_factory=Likelihood)
    inputs: tuple[tuple[str, int], ...] = ()  # conditioning inputs (name, number of classes)
    guide: str = "normal"  # the guide family of every latent whose encoder names none ("diag" in a spec file)
    arch: str = "mlp"  # mlp | conv (networks reading or writing x)
    activation: str = "relu"  # a name in pyrovae.nets.ACTIVATIONS
    corruption: str = "none"  # the point-mass guide's input corruption (denoising autoencoder)
    data_dim: int | None = None  # x.size, when the spec fixes it
    observed: tuple[ObservedSpec, ...] = ()  # class labels generated with x ([[observed]])

    @property
    def labels(self) -> tuple[tuple[str, int], ...]:
        """Every class label a batch carries after x: the inputs, the observed labels, then the partially
        observed latents (-1 where a datapoint's label is unknown)."""
        partial = ((z.name, z.size) for z in self.latents if z.partial)
        return (*self.inputs, *((o.name, o.classes) for o in self.observed), *partial)

    @property
    def discrete(self) -> tuple[tuple[str, int], ...]:
        """The categorical latents, (name, classes): generation can be conditioned on them (``--label``)."""
        return tuple((z.name, z.size) for z in self.latents if self.prior_family(z).capabilities.support == "class")

    @property
    def mean_field(self) -> bool:
        """True when no latent's encoder reads another latent: the analytic-KL objective (``mf-elbo``) is
        then exact; a hierarchical guide q(z_2 | z_1) is not mean field."""
        names = {z.name for z in self.latents}
        return not any(set(z.encoder.given) & names for z in self.latents)

    def guide_family(self, z: LatentSpec) -> families.Family:
        """q(z | ...)'s family, with its options."""
        options = dict(z.encoder.settings)
        if z.encoder.family in (None, "delta") and self.guide == "delta" and self.corruption != "none":
            options["corruption"] = self.corruption
        return families.get(z.encoder.family or self.guide, "guide", options)

    def prior_family(self, z: LatentSpec) -> families.Family:
        """p(z | ...)'s family, with its options (a parentless prior's parameter values apart)."""
        cls = families.FAMILIES[z.prior.family or "normal"]  # parsed names are the registry's (no aliases)
        return families.get(cls.name, "prior", {k: v for k, v in z.prior.settings if k in cls.option_defaults})

    @property
    def deterministic(self) -> bool:
        """Every latent's guide is a point mass: an autoencoder, with no density over x (no ELBO, no bound)."""
        return all(self.guide_family(z).capabilities.deterministic for z in self.latents)

    def without_analytic_kl(self) -> list[str]:
        """The latents whose KL(q || p) has no closed form (``mf-elbo`` needs one for every latent)."""
        return [
            z.name
            for z in self.latents
            if self.prior_family(z).name not in self.guide_family(z).capabilities.analytic_kl
        ]

    def kl_per_dim(self, z: LatentSpec) -> bool:
        """Whether latent ``z`` has a KL per dimension: a stochastic guide and a prior, both factorized."""
        q, p = self.guide_family(z).capabilities, self.prior_family(z).capabilities
        return q.factorized and p.factorized and not q.deterministic
