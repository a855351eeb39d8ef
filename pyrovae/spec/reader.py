"""Reading a spec: TOML files, built-in names and parsed tables into a validated :class:`ModelSpec`.

Every error names its field (``spec: latent[0].encoder.given: ...``) and what it should be.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pyrovae import families
from pyrovae.families.bernoulli import MAX_ENUMERATED_UNITS
from pyrovae.graph import DISCRETE
from pyrovae.guides.delta import Corruption
from pyrovae.models.likelihoods import Likelihood
from pyrovae.nets import ACTIVATIONS
from pyrovae.spec.tree import (
    ARCHS,
    BUILTIN,
    DEFAULT_HIDDEN,
    ESTIMATORS,
    RESERVED,
    TOP_KEYS,
    LatentSpec,
    ModelSpec,
    NetSpec,
    ObservedSpec,
    SpecError,
    is_discrete,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


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


def is_int(value: Any) -> bool:
    """An integer, Python's or NumPy's (``true`` is not one, though Python's ``bool`` is an ``int``)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _ints(value: Any, where: str, *, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(is_int(v) and v > 0 for v in value):
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
    family = family_name(table.get("family"), role, f"{where}.family") if role and "family" in table else None
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


def family_name(name: Any, role: str, where: str) -> str:
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
    family = family_name(prior.get("family", "normal"), "prior", f"{where}.prior.family")
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
    unknown = set(table) - {"name", "size", "given", "hidden", "encoder", "prior", "partially_observed"}
    unknown -= {"estimator", "temperature"}
    if unknown:
        raise SpecError(f"spec: {where}: unknown keys {sorted(unknown)}")
    partial = table.get("partially_observed", False)
    if not isinstance(partial, bool):
        raise SpecError(f"spec: {where}.partially_observed: expected true or false, got {partial!r}")
    name = table.get("name")
    if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
        raise SpecError(
            f"spec: {where}.name: missing or invalid ({name!r}); give an identifier other than {sorted(RESERVED)}"
        )
    size = table.get("size")
    if not is_int(size) or size <= 0:
        raise SpecError(f"spec: {where}.size: missing or invalid ({size!r}); give the dimensions of {name!r}")
    if "encoder" not in table:
        raise SpecError(f"spec: {where}.encoder: missing; give q({name} | ...) as {{ given = [...] }}")
    prior = _prior(table, where, hidden)
    encoder = _net(table["encoder"], f"{where}.encoder", hidden, role="guide")
    if not encoder.given:
        raise SpecError(f'spec: {where}.encoder.given: empty; q({name} | ...) must read something, e.g. given = ["x"]')
    if partial and encoder.family != "categorical":
        raise SpecError(
            f"spec: {where}.partially_observed: only a categorical latent can be observed where its label is "
            'known (encoder.family = "categorical", prior = "categorical")'
        )
    estimator, temperature = _estimator(table, where, is_discrete(encoder.family), partial)
    return LatentSpec(name, size, prior, encoder, partial, estimator, temperature)


def _estimator(table: Mapping, where: str, discrete: bool, partial: bool) -> tuple[str, float]:
    """A discrete latent's ``estimator`` and ``temperature``, checked; continuous latents have neither."""
    if not discrete and {"estimator", "temperature"} & set(table):
        raise SpecError(f"spec: {where}: estimator and temperature apply to discrete latents (categorical, bernoulli)")
    estimator = table.get("estimator", "enumerate")
    if estimator not in ESTIMATORS:
        raise SpecError(f"spec: {where}.estimator: unknown {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    temperature = table.get("temperature", 0.5)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
        raise SpecError(f"spec: {where}.temperature: expected a positive number, got {temperature!r}")
    if "temperature" in table and estimator not in ("relaxed", "straight-through"):
        raise SpecError(f"spec: {where}.temperature: applies to estimator relaxed or straight-through")
    if partial and estimator != "enumerate":
        raise SpecError(f"spec: {where}.estimator: a partially observed latent is enumerated")
    return estimator, float(temperature)


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
    name = family_name(table["likelihood"], "likelihood", "likelihood")
    scales = {k: table[k] for k in ("obs_scale", "min_obs_scale") if k in table}
    for key, value in scales.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise SpecError(f"spec: {key}: expected a positive number, got {value!r}")
    hidden = _ints(table["hidden"], "hidden", what="hidden widths") if "hidden" in table else DEFAULT_HIDDEN
    inputs = table.get("inputs", {})
    if not isinstance(inputs, Mapping) or not all(is_int(v) and v > 1 for v in inputs.values()):
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
    if data_dim is not None and (not is_int(data_dim) or data_dim <= 0):
        raise SpecError(f"spec: x.size: expected a positive integer, got {data_dim!r}")
    x = _net({k: v for k, v in x_table.items() if k != "size"}, "x", hidden)
    partial = [z.name for z in parsed if z.partial]
    observed = _observed(table.get("observed", []), hidden, {z.name for z in parsed}, set(inputs), partial)
    order(parsed, "encoder", {"x", *inputs, *(o.name for o in observed)})
    order(parsed, "prior", set(inputs))
    spec = ModelSpec(
        latents=tuple(parsed),
        x=x,
        likelihood=make_likelihood(name, **scales),
        inputs=tuple(inputs.items()),
        guide=family_name(table.get("guide", "diag"), "guide", "guide"),  # "diag" is the Normal family
        arch=_choice(table, "arch", ARCHS, "mlp"),
        activation=_choice(table, "activation", tuple(ACTIVATIONS), "relu"),
        corruption=table.get("corruption", "none"),
        data_dim=data_dim,
        observed=observed,
    )
    return check_spec(spec)


def _observed(
    tables: Any, hidden: tuple[int, ...], latents: set[str], inputs: set[str], partial: list[str]
) -> tuple[ObservedSpec, ...]:
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
        if not is_int(t.get("classes")) or t["classes"] < 2:
            raise SpecError(f"spec: {where}.classes: expected the number of classes (> 1), got {t.get('classes')!r}")
        net = _net({k: t[k] for k in ("given", "hidden") if k in t}, where, hidden)
        if not net.given or not set(net.given) <= latents | inputs:
            raise SpecError(f"spec: {where}.given: {list(net.given)}; p({name} | ...) reads latents or inputs")
        observed.append(ObservedSpec(name, t["classes"], net))
    if len(observed) + len(inputs) + len(partial) > 1:  # sampling, figures and the runs carry one class label
        raise SpecError(
            "spec: inputs, observed, partially_observed: at most one class label (an input, an observed label or "
            "a partially observed latent), for now"
        )
    return tuple(observed)


def make_likelihood(name: str, **scales: float) -> Likelihood:
    try:
        return Likelihood(name, **scales)
    except ValueError as e:  # a scale <= 0 from the command line
        raise SpecError(f"--obs-scale / --min-obs-scale: {e}") from None


def check_spec(spec: ModelSpec) -> ModelSpec:
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
    for z in spec.latents:  # a discrete latent has a prior and guide of its kind, a continuous one neither
        q, p = spec.guide_family(z), spec.prior_family(z)
        kinds = {f.capabilities.support for f in (q, p)}
        if kinds & set(DISCRETE) and len(kinds) > 1:
            raise SpecError(
                f"spec: latent {z.name!r}: a {q.name} guide and a {p.name} prior; a discrete latent needs a prior "
                'and guide of one kind (prior = "categorical" with encoder.family = "categorical", or both '
                '"bernoulli"), a continuous one neither'
            )
        if q.capabilities.support == "binary" and z.estimator == "enumerate" and z.size > MAX_ENUMERATED_UNITS:
            raise SpecError(
                f"spec: latent {z.name!r}: {z.size} binary units have 2^{z.size} values, too many to enumerate "
                f'(at most {MAX_ENUMERATED_UNITS} units); give estimator = "relaxed", "straight-through" or '
                '"score" (or --discrete)'
            )
    kinds = {spec.guide_family(z).capabilities.deterministic for z in spec.latents}
    if len(kinds) > 1:
        raise SpecError("spec: guide: point-mass (delta) and stochastic guides do not mix; an autoencoder's are all")
    return spec
