"""The vector-quantized VAE (van den Oord et al., 2017) as a Pyro model and guide.

    z_e(x) = encoder(x)                       (P, D): a grid of P = (H/4)(W/4) code vectors (7 x 7 for MNIST)
    k_p = argmin_k ||z_e,p - e_k||            the nearest of the K codebook entries e_k, at each position p
    z_q = e_k                                 (P, D)
    guide:  q(z | x) = delta(z - z_q(x))      a point mass on one of K^P codebook grids
    model:  z ~ p(z) over the K^P grids (uniform, or a learned prior over the codes), x | z ~ p(x | decoder(z))

Because q is a point mass on a *discrete* set, its entropy is 0 and the ELBO is
log p(x | z_q) + log p(z_q) <= log p(x): an honest bound, unlike a continuous point mass (an
autoencoder), whose density is infinite. With the uniform prior, log p(z_q) = -P log K. The guide's
sample is z_e + sg(z_q - z_e) (the straight-through estimator: the decoder's gradient at z_q reaches the
encoder as it is) and, in training, it adds the commitment loss beta ||z_e - sg(z_q)||^2 per datapoint
as a ``pyro.factor``, so that any Pyro objective trains it and none counts it in the bound it reports
(evaluation runs the guide in eval mode, without the factor). The codebook follows exponential moving
averages of the encoder outputs assigned to each entry (:class:`VectorQuantizer`), or, with ``ema=False``,
the codebook loss ||sg(z_e) - z_q||^2 (the paper's first variant).

References: A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning",
NeurIPS 2017; A. Razavi, A. van den Oord, O. Vinyals, "Generating Diverse High-Fidelity Images with
VQ-VAE-2", NeurIPS 2019 (EMA updates, Laplace smoothing); J. Dhariwal et al., "Jukebox: A Generative Model
for Music", 2020 (restarting dead codes from encoder outputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.errors import FieldError, check_choice, check_float, check_int
from pyrovae.models.code_prior import CodePixelCNN
from pyrovae.models.codebook import CodebookPrior, VectorQuantizer

CHANNELS = 64  # feature maps of the encoder and decoder bodies
VQ_MODELS = ("vqvae", "vqvae-prior")  # the first stage (codebook, encoder, decoder) and the learned prior over codes
VQ_FIGURES = ("samples", "reconstructions", "latent-map", "curves")  # pyrovae plot's kinds that a code grid has
# The options of a VQ-VAE run (RunConfig.vq) and their defaults.
VQ_OPTIONS = {
    "codebook_size": 512,  # K entries
    "code_dim": 16,  # D per entry
    "commitment": 0.25,  # beta of beta ||z_e - sg(z_q)||^2
    "codebook_update": "ema",  # ema (moving averages) | loss (the codebook loss ||sg(z_e) - z_q||^2)
    "ema_decay": 0.99,  # gamma of the moving averages
    "restart_after": 20,  # steps an entry may go unused before it restarts at an encoder output; 0: never
    "prior_channels": 64,  # vqvae-prior: the PixelCNN's feature maps
    "prior_layers": 5,  # vqvae-prior: its masked 3 x 3 layers
    "first_stage": None,  # vqvae-prior: the vqvae run it started from (its absolute path)
}


class _Program:
    """What pyrovae's run code asks of a model or guide: no label inputs, no observed or categorical sites
    besides x and z, and a density to bound (a point mass on a discrete set has entropy 0)."""

    inputs = labels = observed = partial = discrete = {}  # noqa: RUF012 - read-only, shared
    probabilistic = True


def conv_encoder(channels: int, code_dim: int) -> nn.Sequential:
    """``(N, C, H, W) -> (N, D, H/4, W/4)``: two stride-2 convolutions and a 1 x 1 projection to the codes."""
    return nn.Sequential(
        nn.Conv2d(channels, CHANNELS // 2, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(CHANNELS // 2, CHANNELS, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(CHANNELS, code_dim, 1),
    )


def conv_decoder(code_dim: int, channels: int) -> nn.Sequential:
    """``(N, D, H/4, W/4) -> (N, C, H, W)`` logits: a 3 x 3 convolution and two stride-2 transposed ones."""
    return nn.Sequential(
        nn.Conv2d(code_dim, CHANNELS, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(CHANNELS, CHANNELS // 2, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(CHANNELS // 2, channels, 4, stride=2, padding=1),
    )


class VQGuide(_Program, nn.Module):
    """q(z | x) = delta(z - z_q(x)) with the straight-through sample and, in training, the commitment factor.

    :param image_shape: ``(C, H, W)``, H and W multiples of 4.
    :param quantizer: the codebook (shared with the model, whose prior ranges over it).
    :param commitment: beta of the commitment loss beta ||z_e - sg(z_q)||^2.
    """

    def __init__(self, image_shape: tuple[int, int, int], quantizer: VectorQuantizer, commitment: float = 0.25):
        super().__init__()
        if len(image_shape) != 3 or image_shape[1] % 4 or image_shape[2] % 4:
            raise ValueError(f"a VQ-VAE needs images (C, H, W) with H and W multiples of 4, got {image_shape}")
        self.image_shape, self.quantizer, self.commitment = tuple(image_shape), quantizer, commitment
        self.encoder = conv_encoder(image_shape[0], quantizer.code_dim)
        self.trainable = True  # False once frozen: no codebook updates, no commitment term

    def freeze(self) -> VQGuide:
        """Fix the encoder and the codebook (the second stage learns a prior over their codes); returns self."""
        self.trainable = False
        return self.requires_grad_(False)

    @property
    def conditionals(self) -> dict[str, nn.Module]:
        """The guide's networks by their ``pyro.module`` names."""
        return {"vq_encoder": self.encoder}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_e(x): ``(..., C*H*W) -> (..., P, D)``, positions in row-major order of the grid."""
        batch = x.shape[:-1]
        maps = self.encoder(x.reshape(-1, *self.image_shape))  # (N, D, H/4, W/4)
        return maps.flatten(2).transpose(1, 2).reshape(*batch, -1, self.quantizer.code_dim)

    def epoch_metrics(self, batches: Callable[[], Iterable[torch.Tensor]]) -> dict[str, Callable[[], float]]:
        """What ``pyrovae train`` records each epoch on the held-out split ``batches()``: the codebook's
        ``perplexity`` and ``codes_used``, and the ``commitment`` ||z_e - sg(z_q)||^2 per datapoint."""

        def commitment() -> float:
            total, n = 0.0, 0
            for x in batches():
                z_e = self.encode(x)
                total += float((z_e - self.quantizer.lookup(self.quantizer.nearest(z_e))).pow(2).sum())
                n += x.shape[0]
            return total / n

        return {
            "perplexity": lambda: perplexity(code_usage(self, batches())),
            "codes_used": lambda: float((code_usage(self, batches()) > 0).sum()),
            "commitment": commitment,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trainable:  # a frozen first stage has no parameters to learn
            pyro.module("vq_encoder", self.encoder)
            if not self.quantizer.ema:  # a learned codebook: the codebook loss's parameter
                pyro.module("vq_codebook", self.quantizer)
        z_e = self.encode(x)  # (B, P, D)
        indices = self.quantizer.nearest(z_e)
        z_q = self.quantizer.lookup(indices)
        training = self.training and self.trainable
        if training and torch.is_grad_enabled():  # a training step (not a probe, not evaluation)
            self.quantizer.update(z_e.detach(), indices)
        with pyro.plate("data", x.shape[0], dim=-1):
            if training:  # beta ||z_e - sg(z_q)||^2 (and the codebook loss without EMA), per datapoint
                penalty = self.commitment * (z_e - z_q.detach()).pow(2).sum((-2, -1))
                if not self.quantizer.ema:
                    penalty = penalty + (z_e.detach() - z_q).pow(2).sum((-2, -1))
                pyro.factor("commitment", penalty, has_rsample=True)  # a guide factor: minus in the ELBO
            return pyro.sample("z", dist.Delta(z_e + (z_q - z_e).detach(), event_dim=2))


class VQModel(_Program, nn.Module):
    """p(z) p(x | z): a prior over the codebook grids (:class:`CodebookPrior`) and a Bernoulli decoder.

    :param prior_logits: a network of the code indices ``(..., P) -> (..., P, K)`` logits that is
        autoregressive over the positions (a learned prior); ``None``: the uniform prior.
    """

    def __init__(self, guide: VQGuide, prior_logits: nn.Module | None = None) -> None:
        super().__init__()
        self.image_shape, self.quantizer = guide.image_shape, guide.quantizer
        c, h, w = self.image_shape
        self.grid = (h // 4, w // 4)
        self.decoder = conv_decoder(self.quantizer.code_dim, c)
        self.prior_logits = prior_logits

    @property
    def conditionals(self) -> dict[str, nn.Module]:
        """The model's networks by their ``pyro.module`` names."""
        return {"vq_decoder": self.decoder, **({"vq_prior": self.prior_logits} if self.prior_logits else {})}

    @property
    def positions(self) -> int:
        """P, the code vectors per datapoint."""
        return self.grid[0] * self.grid[1]

    def prior(self, batch_size: int) -> CodebookPrior:
        """p(z): batch shape ``(batch_size,)``, event shape ``(P, D)``."""
        return CodebookPrior(self.quantizer, self.positions, self.prior_logits).expand([batch_size])

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's Bernoulli logits ``(..., C*H*W)`` of code grids ``z`` ``(..., P, D)``."""
        batch = z.shape[:-2]
        maps = z.reshape(-1, *self.grid, z.shape[-1]).permute(0, 3, 1, 2)  # (N, D, H/4, W/4)
        return self.decoder(maps).reshape(*batch, -1)

    def forward(self, x: torch.Tensor | None = None, *, batch_size: int | None = None) -> torch.Tensor:
        if any(p.requires_grad for p in self.decoder.parameters()):  # not frozen with the first stage
            pyro.module("vq_decoder", self.decoder)
        if self.prior_logits is not None:
            pyro.module("vq_prior", self.prior_logits)
        n = x.shape[0] if x is not None else batch_size
        with pyro.plate("data", n, dim=-1):
            z = pyro.sample("z", self.prior(n))
            likelihood = dist.Bernoulli(logits=self.logits(z), validate_args=False).to_event(1)
            return pyro.sample("x", likelihood, obs=x)


def vq_vae(
    image_shape: tuple[int, int, int],
    *,
    codebook_size: int = 512,
    code_dim: int = 16,
    commitment: float = 0.25,
    ema: bool = True,
    decay: float = 0.99,
    restart_after: int | None = 20,
) -> tuple[VQModel, VQGuide]:
    """A VQ-VAE's model and guide, sharing one codebook of ``codebook_size`` entries of ``code_dim``.

    :param restart_after: steps an entry may go unused before it restarts at a recent encoder output;
        ``None``: never.
    """
    quantizer = VectorQuantizer(codebook_size, code_dim, ema=ema, decay=decay, restart_after=restart_after)
    guide = VQGuide(image_shape, quantizer, commitment)
    return VQModel(guide), guide


def check_vq_options(model: str, options: object) -> dict:
    """A VQ run's options (``RunConfig.vq``) checked, the defaults of those left out filled in.

    :raises FieldError: naming the option (``vq.codebook_size``) that is unknown or out of range.
    """
    if not isinstance(options, dict):
        raise FieldError("vq", f"must be a table of VQ-VAE options, got {options!r}")
    unknown = sorted(set(options) - set(VQ_OPTIONS))
    if unknown:
        raise FieldError(f"vq.{unknown[0]}", f"is not a VQ-VAE option (they are {', '.join(VQ_OPTIONS)})")
    o = {**VQ_OPTIONS, **options}
    for name in ("codebook_size", "code_dim", "prior_channels", "prior_layers"):
        check_int(f"vq.{name}", o[name])
    check_int("vq.restart_after", o["restart_after"], low=0)
    check_float("vq.commitment", o["commitment"])
    check_float("vq.ema_decay", o["ema_decay"], positive=True)
    if not o["ema_decay"] < 1:
        raise FieldError("vq.ema_decay", f"must be below 1, got {o['ema_decay']}")
    check_choice("vq.codebook_update", o["codebook_update"], ("ema", "loss"))
    if o["codebook_size"] < 2:
        raise FieldError("vq.codebook_size", f"must be at least 2, got {o['codebook_size']}")
    if (model == "vqvae-prior") != isinstance(o["first_stage"], str):
        raise FieldError("vq.first_stage", "names the vqvae run a vqvae-prior starts from (and only then)")
    return o


def build_vq(model: str, options: dict, image_shape: tuple[int, ...]) -> tuple[VQModel, VQGuide]:
    """The model and guide of a ``vqvae`` run, or of a ``vqvae-prior`` run (its first stage frozen, a
    :class:`~pyrovae.models.code_prior.CodePixelCNN` as the prior), from ``RunConfig.vq`` options."""
    o = check_vq_options(model, options)
    vq_model, guide = vq_vae(
        tuple(image_shape),
        codebook_size=o["codebook_size"],
        code_dim=o["code_dim"],
        commitment=o["commitment"],
        ema=o["codebook_update"] == "ema",
        decay=o["ema_decay"],
        restart_after=o["restart_after"] or None,
    )
    if model == "vqvae-prior":
        guide.freeze()
        vq_model.decoder.requires_grad_(False)
        vq_model.prior_logits = CodePixelCNN(
            o["codebook_size"], vq_model.grid, channels=o["prior_channels"], layers=o["prior_layers"]
        )
    return vq_model, guide


@torch.no_grad()
def code_usage(guide: VQGuide, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """How many positions of the data in ``batches`` pick each codebook entry: ``(K,)`` counts."""
    counts = torch.zeros(guide.quantizer.size, device=guide.quantizer.codebook.device)
    for x in batches:
        indices = guide.quantizer.nearest(guide.encode(x))
        counts += torch.bincount(indices.reshape(-1), minlength=guide.quantizer.size)
    return counts


def perplexity(counts: torch.Tensor) -> float:
    """exp of the entropy of the code-usage distribution ``counts / counts.sum()``: K for uniform usage,
    1 for a single code."""
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float(entropy.exp())


def bits_per_dim(bound: float, data_dim: int) -> float:
    """A bound in nats per datapoint as bits per dimension: ``-bound / (data_dim ln 2)``."""
    return -bound / (data_dim * math.log(2))
