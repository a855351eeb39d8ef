"""The command line's model options applied to a spec, and a resolved spec written out as a table."""

from __future__ import annotations

import dataclasses
from typing import Any

from pyrovae.spec.reader import check_spec, family_name, make_likelihood
from pyrovae.spec.tree import ESTIMATORS, LatentSpec, ModelSpec, SpecError, is_discrete


def with_options(spec: ModelSpec, **options: Any) -> ModelSpec:
    """``spec`` with the command line's overrides; an option that is ``None`` keeps the spec's value.

    :param options: ``latent_dim`` (one size per latent, in the spec's order),
        ``hidden`` (every network: encoders as given, generative networks
        reversed), ``likelihood``, ``obs_scale``, ``min_obs_scale``, ``guide``,
        ``arch``, ``activation``, ``corruption``, ``discrete`` (every discrete latent's estimator).
    """
    o = {k: v for k, v in options.items() if v is not None}
    latents = list(spec.latents)
    if "discrete" in o:
        latents = _with_estimator(latents, o["discrete"])
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
    lik = make_likelihood(
        o.get("likelihood", lik.name), **{k: o.get(k, getattr(lik, k)) for k in ("obs_scale", "min_obs_scale")}
    )
    if "guide" in o:
        o["guide"] = family_name(o["guide"], "guide", "--guide")
    if "guide" in o and (o["guide"] == "delta") != (spec.guide == "delta"):
        raise SpecError(
            f"--guide {o['guide']}: this model's guide is {spec.guide!r}; the autoencoders alone use 'delta'"
        )
    fields = {k: o[k] for k in ("guide", "arch", "activation", "corruption") if k in o}
    return check_spec(dataclasses.replace(spec, latents=tuple(latents), x=x, likelihood=lik, **fields))


def _with_estimator(latents: list[LatentSpec], estimator: str) -> list[LatentSpec]:
    """``--discrete ESTIMATOR``: every discrete latent trained so (the partially observed stay enumerated)."""
    if estimator not in ESTIMATORS:
        raise SpecError(f"--discrete: unknown {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    discrete = [z for z in latents if is_discrete(z.encoder.family)]
    if not discrete:
        raise SpecError("--discrete: this model has no discrete latent (categorical or bernoulli)")
    if estimator != "enumerate" and any(z.partial for z in discrete):
        raise SpecError(f"--discrete {estimator}: a partially observed latent is enumerated")
    return [dataclasses.replace(z, estimator=estimator) if z in discrete else z for z in latents]


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
            "partially_observed": z.partial,
            **({"estimator": z.estimator} if is_discrete(z.encoder.family) else {}),
            **({"temperature": z.temperature} if z.estimator in ("relaxed", "straight-through") else {}),
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
