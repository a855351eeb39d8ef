"""Importance-weighted bounds and log-likelihood estimates, per datapoint.

The pure functions take a ``(num_particles, batch)`` tensor of log-weights
log w_i = log p(x, z_i) - log q(z_i | x), z_i ~ q(z | x), and reduce over the
particles of each datapoint separately:

    L_k(x)       = log (1/k) sum_i w_i                      (IWAE bound; L_1 is the ELBO)
    L_alpha(x)   = 1/(1 - alpha) log (1/k) sum_i w_i^(1 - alpha)   (Renyi bound, alpha != 1)

Every reduction is a log-sum-exp with the maximum subtracted (``torch.logsumexp``),
so log-weights spanning thousands of nats are safe in float32 and float64.

``iwae_bound`` and ``log_likelihood`` draw the particles in chunks and combine
them with a streaming log-sum-exp, so memory is bounded by ``chunk_size`` x batch
whatever the number of particles. By default ``log_likelihood`` and ``bound_table``
size the chunks to about :data:`ROWS_PER_PASS` particle-datapoint rows: on a CPU,
passes of 25,000 rows ran at 60% of the speed of passes of 2,000 (the activations
no longer fit in cache; ``benchmarks/speed.py``).

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016;
Y. Li, R. E. Turner, "Renyi Divergence Variational Inference", NeurIPS 2016.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pyrovae.distributed import Shard, gathered
from pyrovae.inference.log_weights import log_weights
from pyrovae.primitives import batch_args

# Particle x datapoint rows per vectorized pass when the chunk size is automatic, by device type.
# CPU: the fastest of 500 to 25,000 rows (784-400-400-50 MLPs). Accelerators: a memory bound, about
# 0.5 GB of activations for those MLPs; its speed has not been measured (no GPU was lent so far).
ROWS_PER_PASS = {"cpu": 2048, "cuda": 65536}


def auto_chunk_size(args: tuple, num_particles: int) -> int:
    """Particles per pass so that a pass holds about ``ROWS_PER_PASS`` rows.

    The batch size and device are those of the first tensor in ``args`` (the data).
    """
    data = next((a for a in args if torch.is_tensor(a) and a.dim() > 0), None)
    if data is None:
        return num_particles
    rows = ROWS_PER_PASS.get(data.device.type, ROWS_PER_PASS["cuda"])
    return max(1, min(num_particles, rows // data.shape[0]))


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) sum_i exp(log_w_i) over ``dim``: the IWAE bound of ``(k, batch)`` log-weights."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def renyi_bound(log_w: torch.Tensor, alpha: float) -> torch.Tensor:
    """The Renyi bound per datapoint from ``(k, batch)`` log-weights.

    ``alpha = 0`` is the IWAE bound; ``alpha -> 1`` tends to the ELBO (the mean log-weight),
    which is returned exactly at ``alpha = 1``.
    """
    if alpha == 1:
        return log_w.mean(0)
    return log_mean_exp((1 - alpha) * log_w) / (1 - alpha)


def _streaming_log_sums(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, num_particles: int, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """log sum_i w_i and log sum_i w_i^2 over ``num_particles`` particles, drawn in chunks.

    :returns: two ``(batch,)`` tensors; peak memory is that of one chunk.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    chunk_size = num_particles if chunk_size is None else chunk_size
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    log_sum = log_sum_sq = None
    for start in range(0, num_particles, chunk_size):
        log_w = log_weights(model, guide, *args, num_particles=min(chunk_size, num_particles - start), **kwargs)
        chunk_sum, chunk_sum_sq = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)  # (batch,)
        if log_sum is None:
            log_sum, log_sum_sq = chunk_sum, chunk_sum_sq
        else:
            log_sum, log_sum_sq = torch.logaddexp(log_sum, chunk_sum), torch.logaddexp(log_sum_sq, chunk_sum_sq)
    return log_sum, log_sum_sq


def iwae_bound(
    model: Callable, guide: Callable, *args, num_particles: int, chunk_size: int | None = None, **kwargs
) -> torch.Tensor:
    """A one-draw estimate of L_k(x), k = ``num_particles``, for each datapoint: ``(batch,)``.

    Differentiable when ``chunk_size`` is None (one chunk); use it under
    ``torch.no_grad()`` for evaluation. ``kwargs`` go to the model and guide.
    """
    log_sum, _ = _streaming_log_sums(model, guide, args, kwargs, num_particles, chunk_size)
    return log_sum - math.log(num_particles)


def log_likelihood(
    model: Callable, guide: Callable, *args, num_samples: int = 5000, chunk_size: int | None = None, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-sampled log p(x) with q(z | x) as proposal, and its standard error.

    The estimate log (1/K) sum_i w_i is L_K, a stochastic lower bound whose bias
    shrinks as K grows. The standard error is the delta-method one,
    ``sd(w) / (sqrt(K) mean(w))``, computed in log space from the running sums
    of w and w^2: it is the Monte-Carlo error of the estimate for that datapoint.

    :param num_samples: K, importance samples per datapoint.
    :param chunk_size: particles per vectorized pass; memory grows with it, not with K.
        ``None``: :func:`auto_chunk_size`.
    :returns: ``(estimate, stderr)``, each ``(batch,)``.
    """
    chunk_size = auto_chunk_size(args, num_samples) if chunk_size is None else chunk_size
    with torch.no_grad():
        log_sum, log_sum_sq = _streaming_log_sums(model, guide, args, kwargs, num_samples, chunk_size)
        k = num_samples
        # relative variance of w: E[w^2] / E[w]^2 - 1, with the unbiased k / (k - 1) correction
        relative_var = torch.expm1(log_sum_sq + math.log(k) - 2 * log_sum).clamp(min=0)
        relative_var = relative_var * k / (k - 1) if k > 1 else torch.full_like(log_sum, float("nan"))
        return log_sum - math.log(k), (relative_var / k).sqrt()


def bound_table(
    model: Callable,
    guide: Callable,
    batches: Callable[[], Iterable[torch.Tensor]],
    ks: Sequence[int],
    *,
    chunk_size: int | None = None,
    progress: bool = True,
    seed: int | None = None,
    shard: Shard | None = None,
    **kwargs,
) -> list[dict[str, float]]:
    """L_k for each k in ``ks``, averaged over the data, in nats per datapoint.

    :param batches: called once per k, returns an iterable over the same data (x, or (x, y) tuples).
    :param chunk_size: particles per vectorized pass; ``None``: :func:`auto_chunk_size`.
    :param seed: draw the particles of batch i for k from a seed of ``(seed, k, i)`` alone, so that the
        table does not depend on how the batches are shared out; ``None``: from the global RNG as it is.
    :param shard: under ``torchrun`` (:mod:`pyrovae.distributed`): this rank evaluates batches i with
        ``i % world == rank``, and every rank gets the bounds of all of them (with ``seed``, those of one process).
    :returns: one row per k: ``k``, ``bound`` (mean of per-datapoint estimates;
        k = 1 is the ELBO), ``stderr`` (standard error of that mean over
        datapoints) and ``seconds``.
    """
    rows = []
    for k in ks:
        start = time.perf_counter()
        parts = {}  # batch index -> (B,) per-datapoint L_k
        bar = tqdm(batches(), desc=f"L_{k}", unit="batch", leave=False, disable=None if progress else True)
        with torch.no_grad():
            for i, batch in enumerate(bar):
                if shard is not None and i % shard.world != shard.rank:
                    continue
                if seed is not None:
                    torch.manual_seed(int(np.random.SeedSequence([seed, k, i]).generate_state(1)[0]))
                parts[i] = _chunked_bound(model, guide, batch_args(batch), kwargs, k, chunk_size)
        if shard is not None:
            parts = gathered(parts)
        per_datapoint = torch.cat([parts[i] for i in sorted(parts)])
        rows.append(
            {
                "k": k,
                "bound": per_datapoint.mean().item(),
                "stderr": (per_datapoint.std() / per_datapoint.numel() ** 0.5).item(),
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def _chunked_bound(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, k: int, chunk_size: int | None
) -> torch.Tensor:
    chunk_size = auto_chunk_size(args, k) if chunk_size is None else chunk_size
    return iwae_bound(model, guide, *args, num_particles=k, chunk_size=chunk_size, **kwargs)
