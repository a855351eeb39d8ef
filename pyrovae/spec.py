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

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from pyrovae import families
from pyrovae.errors import InputError
from pyrovae.graph import Node
from pyrovae.guides import AmortizedGuide
from pyrovae.guides.delta import Corruption
from pyrovae.models.latent import LatentModel
from pyrovae.models.likelihoods import Likelihood, Observation
from pyrovae.nets import ACTIVATIONS, make_net

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

BUILTIN = ("vae", "cvae", "hvae", "ae", "dae")  # spec files shipped in pyrovae/models/specs
ARCHS = ("mlp", "conv")
DEFAULT_HIDDEN = (400, 400)
TOP_KEYS = {"description", "likelihood", "guide", "arch", "activation", "hidden", "obs_scale", "min_obs_scale"}
TOP_KEYS |= {"corruption", "inputs", "latent", "x", "observed"}
RESERVED = {"x", "data", "particles", "num_particles_vectorized"}  # x, and the names of pyrovae's and Pyro's plates


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
        """Every class label a batch carries after x: the inputs, then the observed labels."""
        return (*self.inputs, *((o.name, o.classes) for o in self.observed))

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


def builtin_path(name: str) -> Path:
    """The spec file of a built-in family."""
    if name not in BUILTIN:
        raise SpecError(f"unknown model {name!r}; choose from {', '.join(BUILTIN)} or give --spec FILE")
    return Path(str(resources.files("pyrovae.models") / "specs" / f"{name}.toml"))


def read(path: str | Path) -> dict[str, Any]:
    """The raw TOML table of a spec file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))  # TOML is UTF-8, whatever the locale
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
            "a spec is a TOML file, which must be UTF-8: save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None


def load(spec: str | Path | Mapping[str, Any] | ModelSpec) -> ModelSpec:
    """A validated :class:`ModelSpec` from a file, a built-in name, a parsed TOML table or a ModelSpec."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse(spec)
    return parse(read(builtin_path(str(spec)) if str(spec) in BUILTIN else spec))


def _int(value: Any) -> bool:
    """An integer, Python's or NumPy's (``true`` is not one, though Python's ``bool`` is an ``int``)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _ints(value: Any, where: str, *, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_int(v) and v > 0 for v in value):
        raise SpecError(f"spec: {where}: expected {what} (a list of positive integers), got {value!r}")
    return tuple(value)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f'spec: {where}: expected a list of names such as ["x"], got {value!r}')
    if len(set(value)) < len(value):
        raise SpecError(f"spec: {where}: {value!r} names a value twice; give each parent once")
    return tuple(value)


def _choice(table: Mapping, key: str, choices: Sequence[str], default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or value not in choices:
        raise SpecError(f"spec: {key}: unknown {value!r}; choose from {', '.join(choices)}")
    return value


def _net(table: Any, where: str, hidden: tuple[int, ...], *, role: str | None = None) -> NetSpec:
    """A network table: ``given``, ``hidden`` and, for a ``role`` (guide), a ``family`` and its options."""
    if not isinstance(table, Mapping):
        raise SpecError(f"spec: {where}: expected a table with 'given' and optionally 'hidden', got {table!r}")
    allowed = {"given", "hidden"} | ({"family"} if role else set())
    family = _family(table.get("family"), role, f"{where}.family") if role and "family" in table else None
    unknown = set(table) - allowed - (_settings_of(family) if family else set())
    if unknown:
        keys = "'given' and 'hidden'" + (", 'family' and the family's options" if role else "")
        raise SpecError(f"spec: {where}: unknown keys {sorted(unknown)}; a network has {keys}")
    settings = tuple((k, v) for k, v in table.items() if k not in allowed)
    return NetSpec(
        _names(table.get("given", []), f"{where}.given"),
        _ints(table["hidden"], f"{where}.hidden", what="hidden widths") if "hidden" in table else hidden,
        family,
        _checked_settings(family, settings, where, role) if family else (),
    )


def _family(name: Any, role: str, where: str) -> str:
    """A family name for ``role``, in its registry spelling."""
    if not isinstance(name, str) or name not in families.names(role):
        raise SpecError(f"spec: {where}: unknown {name!r}; choose from {', '.join(families.names(role))}")
    return families.ALIASES.get(name, name)


def _settings_of(family: str) -> set[str]:
    """The keys a spec may give a family: its options and its parameters (the values of a parentless prior)."""
    cls = families.FAMILIES[family]
    return set(cls.option_defaults) | {p.name for p in cls.params}


def _checked_settings(family: str, settings: tuple, where: str, role: str) -> tuple[tuple[str, float], ...]:
    """``settings`` valid for ``family``: numbers, options its constructor accepts."""
    for key, value in settings:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SpecError(f"spec: {where}.{key}: expected a number, got {value!r}")
    cls = families.FAMILIES[family]
    try:
        families.get(family, role, {k: v for k, v in settings if k in cls.option_defaults})
    except ValueError as e:
        raise SpecError(f"spec: {where}: {e}") from None
    return tuple((k, float(v)) for k, v in settings)


def _prior(table: Mapping, where: str, hidden: tuple[int, ...]) -> NetSpec:
    """The prior of a latent: ``given``/``hidden`` at the latent's level, and ``prior`` (a family name, or a
    table of ``family``, ``learn`` and the family's parameter values and options)."""
    given = _net({k: table[k] for k in ("given", "hidden") if k in table}, where, hidden)
    prior = table.get("prior", "normal")
    prior = {"family": prior} if isinstance(prior, str) else prior
    if not isinstance(prior, Mapping):
        raise SpecError(
            f"spec: {where}.prior: unknown {prior!r}; give a family ({', '.join(families.names('prior'))}) or a "
            "table with 'family'"
        )
    family = _family(prior.get("family", "normal"), "prior", f"{where}.prior.family")
    unknown = set(prior) - {"family", "learn"} - _settings_of(family)
    if unknown:
        raise SpecError(
            f"spec: {where}.prior: unknown keys {sorted(unknown)}; a {family} prior takes 'family', 'learn' and "
            f"{sorted(_settings_of(family)) or 'nothing else'}"
        )
    learn = prior.get("learn", False)
    if not isinstance(learn, bool):
        raise SpecError(f"spec: {where}.prior.learn: expected true or false, got {learn!r}")
    settings = tuple((k, v) for k, v in prior.items() if k not in ("family", "learn"))
    params = {p.name for p in families.FAMILIES[family].params}
    if given.given and (learn or any(k in params for k, _ in settings)):
        raise SpecError(
            f"spec: {where}.prior: a conditional prior p(z | {', '.join(given.given)}) takes its parameters from "
            "its network; drop learn and the parameter values"
        )
    settings = _checked_settings(family, settings, f"{where}.prior", "prior")
    if given.given and not families.FAMILIES[family].capabilities.conditional:
        raise SpecError(f"spec: {where}.prior: a {family} prior has no parents; drop the latent's given")
    return dataclasses.replace(given, family=family, settings=settings, learn=learn)


def _latent(table: Any, i: int, hidden: tuple[int, ...]) -> LatentSpec:
    where = f"latent[{i}]"
    if not isinstance(table, Mapping):
        raise SpecError(f"spec: {where}: expected a table ([[latent]])")
    unknown = set(table) - {"name", "size", "given", "hidden", "encoder", "prior"}
    if unknown:
        raise SpecError(f"spec: {where}: unknown keys {sorted(unknown)}")
    name = table.get("name")
    if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
        raise SpecError(
            f"spec: {where}.name: missing or invalid ({name!r}); give an identifier other than {sorted(RESERVED)}"
        )
    size = table.get("size")
    if not _int(size) or size <= 0:
        raise SpecError(f"spec: {where}.size: missing or invalid ({size!r}); give the dimensions of {name!r}")
    if "encoder" not in table:
        raise SpecError(f"spec: {where}.encoder: missing; give q({name} | ...) as {{ given = [...] }}")
    prior = _prior(table, where, hidden)
    encoder = _net(table["encoder"], f"{where}.encoder", hidden, role="guide")
    if not encoder.given:
        raise SpecError(f'spec: {where}.encoder.given: empty; q({name} | ...) must read something, e.g. given = ["x"]')
    return LatentSpec(name, size, prior, encoder)


def order(
    latents: Sequence[LatentSpec], key: str, known: set[str], prefer: Sequence[str] | None = None
) -> list[LatentSpec]:
    """``latents`` sorted so that each comes after the latents its ``key`` net ("prior" or "encoder") reads.

    Among the latents whose parents are all placed, the next is the first in
    ``prefer`` (latent names; the file's order by default). The guide prefers the
    model's order, so that a guide whose dependencies allow it samples its sites
    in the model's order, which Pyro's ``TraceMeanField_ELBO`` checks.
    """
    names = {z.name: i for i, z in enumerate(latents)}
    for i, z in enumerate(latents):
        for parent in getattr(z, key).given:
            if parent not in known and parent not in names:
                raise SpecError(
                    f"spec: latent[{i}].{key}.given: unknown {parent!r}; known: {sorted(known | set(names))}"
                )
    rank = {name: i for i, name in enumerate(prefer if prefer is not None else names)}
    pending = sorted(latents, key=lambda z: rank[z.name])
    ordered: list[LatentSpec] = []
    while pending:
        done = {z.name for z in ordered}
        ready = next((z for z in pending if set(getattr(z, key).given) - known <= done), None)
        if ready is None:
            stuck = sorted(set(names) - done)
            raise SpecError(f"spec: latent[*].{key}.given: the latents {stuck} form a cycle")
        ordered.append(ready)
        pending.remove(ready)
    return ordered


def parse(table: Mapping[str, Any]) -> ModelSpec:
    """Validate a parsed TOML table; every error names its field."""
    unknown = set(table) - TOP_KEYS
    if unknown:
        raise SpecError(f"spec: unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    if not isinstance(table.get("description", ""), str):
        raise SpecError(f"spec: description: expected a string, got {table['description']!r}")
    if "likelihood" not in table:
        raise SpecError(f"spec: likelihood: missing; choose from {', '.join(families.names('likelihood'))}")
    name = _family(table["likelihood"], "likelihood", "likelihood")
    scales = {k: table[k] for k in ("obs_scale", "min_obs_scale") if k in table}
    for key, value in scales.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise SpecError(f"spec: {key}: expected a positive number, got {value!r}")
    hidden = _ints(table["hidden"], "hidden", what="hidden widths") if "hidden" in table else DEFAULT_HIDDEN
    inputs = table.get("inputs", {})
    if not isinstance(inputs, Mapping) or not all(_int(v) and v > 1 for v in inputs.values()):
        raise SpecError(f"spec: inputs: expected name = number of classes (> 1), got {inputs!r}")
    bad_inputs = sorted(k for k in inputs if not k.isidentifier() or k in RESERVED)
    if bad_inputs:
        raise SpecError(f"spec: inputs: invalid names {bad_inputs}; give identifiers other than {sorted(RESERVED)}")
    if len(inputs) > 1:  # sampling, figures and the runs condition on one class label
        raise SpecError(f"spec: inputs: {list(inputs)}: at most one label input is supported (for now); keep one")
    latents = table.get("latent")
    if not isinstance(latents, list) or not latents:
        what = "missing" if latents is None else f"expected an array of tables, got {latents!r}"
        raise SpecError(f"spec: latent: {what}; give at least one [[latent]] table with name, size and encoder")
    parsed = [_latent(z, i, hidden) for i, z in enumerate(latents)]
    if len({z.name for z in parsed}) < len(parsed) or {z.name for z in parsed} & set(inputs):
        raise SpecError("spec: latent[*].name: names must be unique and differ from the inputs")
    if "x" not in table:
        raise SpecError("spec: x: missing; give p(x | ...) as [x] given = [...]")
    x_table = table["x"]
    if not isinstance(x_table, Mapping):
        raise SpecError(f"spec: x: expected a table ([x] given = [...]), got {x_table!r}")
    data_dim = x_table.get("size")
    if data_dim is not None and (not _int(data_dim) or data_dim <= 0):
        raise SpecError(f"spec: x.size: expected a positive integer, got {data_dim!r}")
    x = _net({k: v for k, v in x_table.items() if k != "size"}, "x", hidden)
    observed = _observed(table.get("observed", []), hidden, {z.name for z in parsed}, set(inputs))
    order(parsed, "encoder", {"x", *inputs, *(o.name for o in observed)})
    order(parsed, "prior", set(inputs))
    spec = ModelSpec(
        latents=tuple(parsed),
        x=x,
        likelihood=_likelihood(name, **scales),
        inputs=tuple(inputs.items()),
        guide=_family(table.get("guide", "diag"), "guide", "guide"),  # "diag" is the Normal family
        arch=_choice(table, "arch", ARCHS, "mlp"),
        activation=_choice(table, "activation", tuple(ACTIVATIONS), "relu"),
        corruption=table.get("corruption", "none"),
        data_dim=data_dim,
        observed=observed,
    )
    return _check(spec)


def _observed(tables: Any, hidden: tuple[int, ...], latents: set[str], inputs: set[str]) -> tuple[ObservedSpec, ...]:
    """``[[observed]]``: class labels generated from the latents (name, classes, given, hidden, likelihood)."""
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise SpecError(f"spec: observed: expected an array of tables ([[observed]]), got {tables!r}")
    observed = []
    for i, t in enumerate(tables):
        where = f"observed[{i}]"
        unknown = set(t) - {"name", "classes", "given", "hidden", "likelihood"}
        if unknown:
            raise SpecError(f"spec: {where}: unknown keys {sorted(unknown)}")
        name = t.get("name")
        if not isinstance(name, str) or not name.isidentifier() or name in RESERVED | latents | inputs:
            raise SpecError(f"spec: {where}.name: {name!r}; give an identifier that no latent or input has")
        if t.get("likelihood", "categorical") != "categorical":
            raise SpecError(f"spec: {where}.likelihood: {t['likelihood']!r}; an observed label is 'categorical'")
        if not _int(t.get("classes")) or t["classes"] < 2:
            raise SpecError(f"spec: {where}.classes: expected the number of classes (> 1), got {t.get('classes')!r}")
        net = _net({k: t[k] for k in ("given", "hidden") if k in t}, where, hidden)
        if not net.given or not set(net.given) <= latents | inputs:
            raise SpecError(f"spec: {where}.given: {list(net.given)}; p({name} | ...) reads latents or inputs")
        observed.append(ObservedSpec(name, t["classes"], net))
    if len(observed) + len(inputs) > 1:  # sampling, figures and the runs carry one class label
        raise SpecError("spec: inputs, observed: at most one class label (an input or an observed label), for now")
    return tuple(observed)


def _likelihood(name: str, **scales: float) -> Likelihood:
    try:
        return Likelihood(name, **scales)
    except ValueError as e:  # a scale <= 0 from the command line
        raise SpecError(f"--obs-scale / --min-obs-scale: {e}") from None


def _check(spec: ModelSpec) -> ModelSpec:
    if not isinstance(spec.corruption, str):
        raise SpecError(f"spec: corruption: expected a string such as 'mask:0.3', got {spec.corruption!r}")
    known = {z.name for z in spec.latents} | {name for name, _ in spec.labels}
    if not spec.x.given or not set(spec.x.given) <= known or not set(spec.x.given) & {z.name for z in spec.latents}:
        raise SpecError(f"spec: x.given: {list(spec.x.given)} must name at least one latent (and only {sorted(known)})")
    if spec.corruption != "none" and spec.guide != "delta":
        raise SpecError("spec: corruption: applies to the autoencoders (guide = 'delta') only")
    try:
        Corruption(spec.corruption)
    except ValueError as e:
        raise SpecError(f"spec: corruption: {e}") from None
    kinds = {spec.guide_family(z).capabilities.deterministic for z in spec.latents}
    if len(kinds) > 1:
        raise SpecError("spec: guide: point-mass (delta) and stochastic guides do not mix; an autoencoder's are all")
    return spec


def with_options(spec: ModelSpec, **options: Any) -> ModelSpec:
    """``spec`` with the command line's overrides; an option that is ``None`` keeps the spec's value.

    :param options: ``latent_dim`` (one size per latent, in the spec's order),
        ``hidden`` (every network: encoders as given, generative networks
        reversed), ``likelihood``, ``obs_scale``, ``min_obs_scale``, ``guide``,
        ``arch``, ``activation``, ``corruption``.
    """
    o = {k: v for k, v in options.items() if v is not None}
    latents = list(spec.latents)
    if "latent_dim" in o:
        if len(o["latent_dim"]) != len(latents):
            names = ", ".join(z.name for z in latents)
            raise SpecError(f"--latent-dim: give {len(latents)} sizes ({names}), got {len(o['latent_dim'])}")
        latents = [dataclasses.replace(z, size=s) for z, s in zip(latents, o["latent_dim"], strict=True)]
    x = spec.x
    if "hidden" in o:
        forward, backward = tuple(o["hidden"]), tuple(reversed(o["hidden"]))
        latents = [
            dataclasses.replace(
                z,
                prior=dataclasses.replace(z.prior, hidden=backward),
                encoder=dataclasses.replace(z.encoder, hidden=forward),
            )
            for z in latents
        ]
        x = dataclasses.replace(x, hidden=backward)
    lik = spec.likelihood
    lik = _likelihood(
        o.get("likelihood", lik.name), **{k: o.get(k, getattr(lik, k)) for k in ("obs_scale", "min_obs_scale")}
    )
    if "guide" in o:
        o["guide"] = _family(o["guide"], "guide", "--guide")
    if "guide" in o and (o["guide"] == "delta") != (spec.guide == "delta"):
        raise SpecError(
            f"--guide {o['guide']}: this model's guide is {spec.guide!r}; the autoencoders alone use 'delta'"
        )
    fields = {k: o[k] for k in ("guide", "arch", "activation", "corruption") if k in o}
    return _check(dataclasses.replace(spec, latents=tuple(latents), x=x, likelihood=lik, **fields))


def to_table(spec: ModelSpec) -> dict[str, Any]:
    """The spec table of a resolved :class:`ModelSpec`, every value written out: ``parse(to_table(s)) == s``.

    ``config.json`` stores a run's model so (the spec with the command line's overrides applied), so that
    the run rebuilds its model from that table alone, whatever the built-in spec files become.
    """
    lik = spec.likelihood
    table: dict[str, Any] = {
        "likelihood": lik.name,
        "obs_scale": lik.obs_scale,
        "min_obs_scale": lik.min_obs_scale,
        "guide": spec.guide,
        "arch": spec.arch,
        "activation": spec.activation,
        "corruption": spec.corruption,
    }
    if spec.inputs:
        table["inputs"] = dict(spec.inputs)
    table["latent"] = [
        {
            "name": z.name,
            "size": z.size,
            "given": list(z.prior.given),
            "hidden": list(z.prior.hidden),
            "prior": {"family": z.prior.family or "normal", "learn": z.prior.learn, **dict(z.prior.settings)},
            "encoder": {
                "given": list(z.encoder.given),
                "hidden": list(z.encoder.hidden),
                **({"family": z.encoder.family} if z.encoder.family else {}),
                **dict(z.encoder.settings),
            },
        }
        for z in spec.latents
    ]
    size = {"size": spec.data_dim} if spec.data_dim is not None else {}
    table["x"] = {"given": list(spec.x.given), "hidden": list(spec.x.hidden), **size}
    if spec.observed:
        table["observed"] = [
            {"name": o.name, "classes": o.classes, "given": list(o.net.given), "hidden": list(o.net.hidden)}
            for o in spec.observed
        ]
    return table


def _check_shape(spec: ModelSpec, data_dim: Any, image_shape: Any) -> int:
    """The size of x for :func:`build`: ``data_dim``, else the spec's ``x.size``; checked against both.

    :raises SpecError: (a ``ValueError``) for a ``data_dim`` that is not a positive integer,
        an ``image_shape`` of non-positive entries or whose product is not the size of x.
    """
    if data_dim is not None and not (_int(data_dim) and data_dim > 0):
        raise SpecError(f"data_dim: expected a positive integer, got {data_dim!r}")
    data_dim = int(data_dim) if data_dim is not None else spec.data_dim
    if data_dim is None:
        raise SpecError("spec: x.size: missing; give the data size (or pass data_dim)")
    if spec.data_dim is not None and spec.data_dim != data_dim:
        raise SpecError(f"spec: x.size: {spec.data_dim}, but the data have {data_dim} dimensions")
    if image_shape is not None:
        shape = tuple(image_shape) if isinstance(image_shape, Sequence) else None
        if not shape or not all(_int(n) and n > 0 for n in shape) or math.prod(shape) != data_dim:
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
                f"{where} has no labels; a label input needs a labelled data set (mnist-5k, mnist or fashion-mnist)"
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
    model = LatentModel(model_nodes, x, model_modules, inputs, autoencoder=autoencoder, labels=label_nodes)
    observed = {o.name: o.classes for o in spec.observed}
    return model, AmortizedGuide(guide_nodes, guide_modules, inputs, autoencoder=autoencoder, observed=observed)
