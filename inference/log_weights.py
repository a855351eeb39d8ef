"""Per-datapoint log-weights log p(x, z) - log q(z | x) for any Pyro model and guide.

Pyro's ``vectorized_importance_weights`` sums over the data plate and returns one
joint weight per minibatch; bounds such as IWAE need one weight per datapoint and
particle. Here the particles are vectorized in a plate at dim -2 (the data plate
is at dim -1), every site's log-density is kept at shape ``(num_particles, batch)``,
and the data plate's subsample scale N / B is divided out, while ``poutine.scale``
factors (beta) and masks stay applied.

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

PARTICLE_PLATE = "particles"
FIRST_ENUM_DIM = -3  # enumerated sites take dims left of the particle plate (-2) and the data plate (-1)


class ParticleTraces(NamedTuple):
    """Model and guide traces of ``num_particles`` vectorized particles."""

    guide: Trace
    model: Trace
    data_scale: float  # N / B of the data plate: 1 without subsampling


def vectorized(fn: Callable, num_particles: int) -> Callable:
    """``fn`` run inside a plate of ``num_particles`` particles at dim -2."""

    def fn_with_particles(*args, **kwargs):
        with pyro.plate(PARTICLE_PLATE, num_particles, dim=-2):
            return fn(*args, **kwargs)

    return fn_with_particles


def particle_traces(
    model: Callable, guide: Callable, *args, num_particles: int, guide_trace: Trace | None = None, **kwargs
) -> ParticleTraces:
    """Trace the guide (unless ``guide_trace`` is given), then the model replayed against it.

    Sites marked ``infer={"enumerate": "parallel"}`` are enumerated (``poutine.enum``): each takes all
    its values at once in a dimension of its own left of the particle plate, the guide's from dim -3
    on, the model's own further left (as Pyro's ``TraceEnum_ELBO`` allocates them).
    """
    guide_trace, model_trace = _enumerated_traces(model, guide, args, kwargs, num_particles, guide_trace)
    return ParticleTraces(guide_trace, model_trace, data_scale(model_trace))


def _enumerated_traces(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, num_particles: int, guide_trace: Trace | None
) -> tuple[Trace, Trace]:
    """Guide and model traces under ``poutine.enum``: the guide's enumerated dims from -3, the model's left of them."""
    if guide_trace is None:
        enumerated_guide = EnumMessenger(first_available_dim=FIRST_ENUM_DIM)(vectorized(guide, num_particles))
        guide_trace = poutine.trace(enumerated_guide).get_trace(*args, **kwargs)
    first = FIRST_ENUM_DIM - len(enumerated_dims(guide_trace))
    replayed = poutine.replay(vectorized(model, num_particles), trace=guide_trace)
    return guide_trace, poutine.trace(EnumMessenger(first_available_dim=first)(replayed)).get_trace(*args, **kwargs)


def enumerated_sites(model: Callable, guide: Callable, *args, **kwargs) -> list[str]:
    """The sites of model and guide that are enumerated (``infer={"enumerate": "parallel"}``), one run on ``args``."""
    with torch.no_grad():
        guide_trace, model_trace = _enumerated_traces(model, guide, args, kwargs, 1, None)
    return sorted({*enumerated_dims(guide_trace), *enumerated_dims(model_trace)})


def enumerated_dims(trace: Trace) -> dict[str, int]:
    """The trace's enumerated sites and the dim each enumerates in, ``{site: dim}`` (dims <= -3)."""
    return {s["name"]: s["infer"]["_enumerate_dim"] for s in sample_sites(trace) if "_enumerate_dim" in s["infer"]}


def plate_frame(site: dict):
    """The site's plate frame at dim -1 other than the particle plate, or ``None`` (a site outside every plate)."""
    frames = [f for f in site["cond_indep_stack"] if f.dim == -1 and f.name != PARTICLE_PLATE]
    return frames[0] if frames else None


def _data_frame(site: dict):
    frame = plate_frame(site)
    if frame is None:
        raise ValueError(
            f"site {site['name']!r} is outside a plate at dim -1 (a global site, shared by all datapoints); "
            "per-datapoint log-weights and bounds (log_weights, IWAE, Renyi) need every sample site inside "
            "the data plate: train this model with the ELBO ('elbo' or 'mf-elbo')"
        )
    return frame


def data_plate_name(trace: Trace) -> str | None:
    """The name of the data plate: the plate at dim -1 that holds the trace's observed sites; ``None`` if none does.

    :raises ValueError: when observed sites sit in different plates at dim -1.
    """
    names = {frame.name for s in sample_sites(trace) if s["is_observed"] and (frame := plate_frame(s)) is not None}
    if len(names) > 1:
        raise ValueError(f"observed sites sit in different plates at dim -1 ({', '.join(sorted(names))}); need one")
    return names.pop() if names else None


def data_scale(trace: Trace) -> float:
    """The data plate's subsample scale N / B (1 without subsampling).

    :raises ValueError: naming a sample site outside the data plate (the plate of the
        observed sites, or in a guide the first site's): a global latent, also one in
        another plate at dim -1 whose size happens to equal the batch's.
    """
    sites = sample_sites(trace)
    if not sites:
        raise ValueError("the model has no sample site")
    name = data_plate_name(trace) or _data_frame(sites[0]).name
    for site in sites:
        if (frame := _data_frame(site)).name != name:
            raise ValueError(
                f"site {site['name']!r} is in plate {frame.name!r} at dim -1, outside the data plate {name!r} "
                "(a global site, shared by all datapoints); per-datapoint log-weights and bounds (log_weights, "
                "IWAE, Renyi) need every sample site inside the data plate: train this model with the ELBO"
            )
    frame = _data_frame(sites[0])
    return frame.full_size / frame.size if frame.full_size is not None else 1.0


def sample_sites(trace: Trace) -> list[dict]:
    """The trace's sample sites, without the plates' subsample sites."""
    return [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]


def site_weight(site: dict, log_p: torch.Tensor | float = 1.0) -> torch.Tensor | float:
    """``log_p`` times the site's scale and mask (beta, ``poutine.mask``), without the plate's N / B."""
    frame = _data_frame(site)
    scale = site["scale"]
    if frame.full_size is not None and frame.full_size != frame.size:
        scale = scale / (frame.full_size / frame.size)  # undo the plate's N / B
    return scale_and_mask(log_p, scale, site["mask"])


def site_log_prob(site: dict, value: torch.Tensor | None = None) -> torch.Tensor:
    """A site's log-density per particle and datapoint, without the plate subsample scale.

    :param value: evaluate at this value instead of the site's own (same shape).
    """
    log_p = site["fn"].log_prob(site["value"] if value is None else value)  # (num_particles, batch)
    return site_weight(site, log_p)


def traced_log_weights(traces: ParticleTraces) -> torch.Tensor:
    """log p(x, z) - log q(z | x) per particle and datapoint, ``(k, batch)``, from traces.

    Enumerated sites are summed exactly inside the weight: with y enumerated and z sampled,
    w = sum_y p(x, y, z_y) / q(z_y | x, y), an unbiased estimate of p(x) whatever q(y | x) is
    (p(x) = sum_y E_q(z | x, y)[p(x, y, z) / q(z | x, y)]), so q(y | x) drops out of it; a
    model-only enumerated y is marginalized, w = sum_y p(x, y, z) / q(z | x).
    """
    guide_enumerated = enumerated_dims(traces.guide)
    log_p = sum(site_log_prob(s) for s in sample_sites(traces.model))
    log_q = sum(
        site_log_prob(s)
        for s in sample_sites(traces.guide)
        if not s["is_observed"] and s["name"] not in guide_enumerated
    )
    return _sum_enumerated(log_p - log_q, traces)


def _sum_enumerated(log_w: torch.Tensor | float, traces: ParticleTraces) -> torch.Tensor:
    """``log_w`` ``(*enumerated, k, batch)`` with every enumerated dim summed out (log-sum-exp): ``(k, batch)``."""
    if not (enumerated_dims(traces.guide) or enumerated_dims(traces.model)):
        return log_w
    return log_w.reshape(-1, *log_w.shape[-2:]).logsumexp(0)


def conditioned_log_densities(
    model: Callable, guide: Callable, values: dict[str, torch.Tensor], *args, num_particles: int, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x, z) and log q(z | x), ``(k, batch)`` each, at given latent ``values`` ``{site: (k, batch, ...)}``.

    Both programs run conditioned on the values, so gradients with respect to the
    values include every path through which the densities depend on them (such as
    a hierarchical guide's q(z_2 | z_1)).
    """
    guide_trace = poutine.trace(poutine.condition(vectorized(guide, num_particles), data=values))
    model_trace = poutine.trace(poutine.condition(vectorized(model, num_particles), data=values))
    log_q = sum(site_log_prob(s) for s in sample_sites(guide_trace.get_trace(*args, **kwargs)) if s["name"] in values)
    log_p = sum(site_log_prob(s) for s in sample_sites(model_trace.get_trace(*args, **kwargs)))
    return log_p, log_q


def elbo_terms(
    model: Callable, guide: Callable, *args, num_particles: int = 1, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample z ~ q(z | x) and split log w = log p(x, z) - log q(z | x) in two.

    :returns: ``(log_likelihood, log_ratio)``, each ``(num_particles, batch)``:
        ``log_likelihood`` sums the model's observed sites (log p(x | z)) and
        ``log_ratio`` sums log q(z | x) - log p(z) over the latent sites, so that
        ``log w = log_likelihood - log_ratio`` and ``E_q[log_ratio]`` is the KL.

    With enumerated sites both are exact expectations over them: a guide-enumerated y is
    weighted by q(y | x) (the ELBO's sum_y q(y | x) [...]), a model-only enumerated one is
    marginalized, log p(x | z) = log sum_y p(y | z) p(x | y, z), log p(z) = log sum_y p(y, z).
    """
    traces = particle_traces(model, guide, *args, num_particles=num_particles, **kwargs)
    model_sites = sample_sites(traces.model)
    observed = [site_log_prob(s) for s in model_sites if s["is_observed"]]
    if not observed:
        raise ValueError("the model has no observed sample site")
    latent = [site_log_prob(s) for s in model_sites if not s["is_observed"]]
    guide_sites = [s for s in sample_sites(traces.guide) if not s["is_observed"]]
    log_q = [site_log_prob(s) for s in guide_sites]
    zero = torch.zeros_like(observed[0])
    log_px, log_pz, log_q = sum(observed, zero), sum(latent, zero), sum(log_q, zero)
    if not (enumerated_dims(traces.guide) or enumerated_dims(traces.model)):
        return log_px, log_q - log_pz
    return _enumerated_elbo_terms(traces, log_px, log_pz, log_q, guide_sites)


def _enumerated_elbo_terms(
    traces: ParticleTraces, log_px: torch.Tensor, log_pz: torch.Tensor, log_q: torch.Tensor, guide_sites: list[dict]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`elbo_terms` with enumerated sites: ``(*enumerated, k, batch)`` terms reduced to ``(k, batch)``."""
    guide_dims = enumerated_dims(traces.guide)
    model_dims = sorted(set(enumerated_dims(traces.model).values()) - set(guide_dims.values()))
    log_joint = log_px + log_pz  # broadcast to every enumerated dim
    log_pz = log_pz.expand_as(log_joint)
    if model_dims:  # marginalize the model-only ones: log p(x, z) and log p(z) given the sampled z
        log_joint, log_pz = (t.logsumexp(model_dims, keepdim=True) for t in (log_joint, log_pz))
    enumerated_q = sum((site_log_prob(s) for s in guide_sites if s["name"] in guide_dims), torch.zeros(()))
    weight = enumerated_q.exp()  # q(y | x) of the guide-enumerated values; they sum to 1 over them
    total = torch.broadcast_shapes(weight.shape, log_joint.shape, log_q.shape)

    def expect(t: torch.Tensor) -> torch.Tensor:
        return (weight * t).expand(total).reshape(-1, *total[-2:]).sum(0)

    return expect(log_joint - log_pz), expect(log_q - log_pz)


def log_weights(model: Callable, guide: Callable, *args, num_particles: int = 1, **kwargs) -> torch.Tensor:
    """log p(x, z_i) - log q(z_i | x) for i = 1..num_particles, per datapoint.

    :param num_particles: k, the number of samples z_i ~ q(z | x) per datapoint (vectorized).
    :returns: tensor of shape ``(num_particles, batch)``.
    """
    return traced_log_weights(particle_traces(model, guide, *args, num_particles=num_particles, **kwargs))
