"""A codebook of K vectors: nearest-entry quantization with EMA updates and dead-code restarts, and the prior
over grids of its entries.

EMA update (Razavi et al., 2019, appendix), for a batch whose n_k positions pick entry k, with sum s_k of
their encoder outputs, decay gamma and Laplace smoothing epsilon:

    N_k <- gamma N_k + (1 - gamma) n_k,     m_k <- gamma m_k + (1 - gamma) s_k
    N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j,     e_k = m_k / N~_k

References: A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning",
NeurIPS 2017; A. Razavi, A. van den Oord, O. Vinyals, "Generating Diverse High-Fidelity Images with
VQ-VAE-2", NeurIPS 2019; J. Dhariwal et al., "Jukebox: A Generative Model for Music", 2020 (restarts).
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import nn
from torch.distributions import constraints


class VectorQuantizer(nn.Module):
    """K codebook entries of dimension D, a buffer updated by EMA (or, with ``ema=False``, a parameter).

    :param decay: gamma of the moving averages.
    :param epsilon: Laplace smoothing of the counts (no entry's count reaches 0).
    :param restart_after: training steps an entry may go unpicked before it is set to a random encoder output
        of the current batch; ``None``: never.

    At the first :meth:`update` every entry is set to an encoder output of the batch drawn at random (a
    data-dependent start: entries drawn from a fixed range far from the encoder's outputs are never picked).
    """

    def __init__(
        self,
        size: int,
        code_dim: int,
        *,
        ema: bool = True,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        restart_after: int | None = 20,
    ) -> None:
        super().__init__()
        if size < 2 or code_dim < 1:
            raise ValueError(f"a codebook needs at least 2 entries of dimension >= 1, got {size} x {code_dim}")
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay}")
        self.size, self.code_dim, self.ema, self.decay, self.epsilon = size, code_dim, ema, decay, epsilon
        self.restart_after = restart_after
        start = torch.empty(size, code_dim).uniform_(-1 / size, 1 / size)  # as the paper's reference code
        if ema:
            self.register_buffer("codebook", start)
            self.register_buffer("ema_count", torch.ones(size))  # N_k: one position each to start
            self.register_buffer("ema_sum", start.clone())  # m_k = N_k e_k
        else:
            self.codebook = nn.Parameter(start)
        self.register_buffer("idle", torch.zeros(size, dtype=torch.long))  # steps since each entry was picked
        self.register_buffer("initialized", torch.tensor(False))  # set at the first update, from the encoder

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """The index of the entry nearest each vector of ``z`` ``(..., D)`` in Euclidean distance: ``(...)``."""
        flat = z.reshape(-1, self.code_dim)
        e = self.codebook.detach()
        distances = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(-1)  # (N, K)
        return distances.argmin(-1).reshape(z.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The entries at ``indices`` ``(...)``: ``(..., D)``."""
        return self.codebook[indices]

    @torch.no_grad()
    def update(self, z_e: torch.Tensor, indices: torch.Tensor) -> None:
        """One training step's EMA update of the counts, sums and entries (with ``ema``) and the restarts."""
        flat, picked = z_e.reshape(-1, self.code_dim), indices.reshape(-1)
        if not self.initialized:  # the entries start at encoder outputs, not all far from every one of them
            self.restart(flat, torch.ones(self.size, dtype=torch.bool, device=flat.device))
            self.initialized.fill_(True)
            picked = self.nearest(flat)
        counts = torch.bincount(picked, minlength=self.size).to(flat.dtype)  # n_k
        self.idle = torch.where(counts > 0, 0, self.idle + 1)
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, picked, flat)  # s_k
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + self.epsilon) / (total + self.size * self.epsilon) * total
            self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(-1))
        if self.restart_after is not None:
            self.restart(flat, self.idle >= self.restart_after)

    @torch.no_grad()
    def restart(self, z_e: torch.Tensor, dead: torch.Tensor) -> None:
        """Set the ``dead`` entries (a ``(K,)`` mask) to encoder outputs of ``z_e`` ``(N, D)`` drawn at random."""
        n = int(dead.sum())
        if n == 0:
            return
        chosen = z_e[torch.randint(z_e.shape[0], (n,), device=z_e.device)]
        self.codebook.data[dead] = chosen
        if self.ema:
            self.ema_count[dead] = 1.0
            self.ema_sum[dead] = chosen
        self.idle[dead] = 0


class CodebookPrior(TorchDistribution):
    """A distribution over grids of P codebook entries, event shape ``(P, D)``: independent uniform
    categoricals over the K entries, or the autoregressive ``logits_net`` of the grid's indices.

    ``log_prob(z)`` reads each position's entry as the nearest one (exact for the values this
    distribution and the VQ guide produce) and carries no gradient to ``z``: the decoder's does.

    :param logits_net: ``(..., P) long -> (..., P, K)``, the logits of index p given the indices before p
        (a causal network: sampling runs it P times); ``None``: log p(z) = -P log K.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real  # vectors that are codebook entries; log_prob assumes it
    has_rsample = False

    def __init__(
        self,
        quantizer: VectorQuantizer,
        positions: int,
        logits_net: nn.Module | None = None,
        batch_shape: torch.Size | tuple = (),
    ) -> None:
        self.quantizer, self.positions, self.logits_net = quantizer, positions, logits_net
        super().__init__(torch.Size(batch_shape), torch.Size((positions, quantizer.code_dim)), validate_args=False)

    def expand(self, batch_shape, _instance=None) -> CodebookPrior:
        return CodebookPrior(self.quantizer, self.positions, self.logits_net, batch_shape)

    def index_log_prob(self, indices: torch.Tensor) -> torch.Tensor:
        """log p of index grids ``(..., P)``: ``(...)``."""
        if self.logits_net is None:
            return torch.full(indices.shape[:-1], -self.positions * math.log(self.quantizer.size),
                              device=indices.device)  # fmt: skip
        logits = self.logits_net(indices).log_softmax(-1)  # (..., P, K)
        return logits.gather(-1, indices.unsqueeze(-1)).squeeze(-1).sum(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        log_p = self.index_log_prob(self.quantizer.nearest(value.detach()))
        return log_p.expand(torch.broadcast_shapes(log_p.shape, self.batch_shape))

    @torch.no_grad()
    def sample_indices(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Index grids ``(*sample_shape, *batch_shape, P)``: position by position under a learned prior."""
        shape = (*sample_shape, *self.batch_shape, self.positions)
        device = self.quantizer.codebook.device
        if self.logits_net is None:
            return torch.randint(self.quantizer.size, shape, device=device)
        indices = torch.zeros(shape, dtype=torch.long, device=device)
        for p in range(self.positions):  # p's logits read the indices before p alone
            indices[..., p] = dist.Categorical(logits=self.logits_net(indices)[..., p, :]).sample()
        return indices

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self.quantizer.lookup(self.sample_indices(sample_shape)).detach()
