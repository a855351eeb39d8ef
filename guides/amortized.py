"""The one guide function every pyrovae guide runs: amortized q(z | x, inputs) over a node list.

Each latent's conditional reads x, the conditioning inputs, or latents the guide
sampled before it: q(z | x) for a VAE, q(z | x, y) for a conditional VAE,
q(z_1 | x) q(z_2 | z_1) for the IWAE paper's two-layer model. The conditionals
decide the family (diagonal or full-covariance Normal, or a point mass for the
autoencoders).

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import torch

from pyrovae.graph import LatentGraph, check_mask
from pyrovae.primitives import data_plate, kl_scale


class AmortizedGuide(LatentGraph):
    """q(z | x, inputs) as a Pyro guide; takes the model's arguments (``batch_size`` is unused)."""

    def forward(
        self,
        x: torch.Tensor,
        *inputs: torch.Tensor,
        beta: float = 1.0,
        num_data: int | None = None,
        batch_size: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample every latent; returns the last one sampled (z for a one-latent guide).

        :param mask: x's visible dimensions (the model's): the encoders read x with the others set to 0.
        """
        self.register()
        check_mask(x, mask)
        if mask is not None:
            x = torch.where(mask.bool(), x, torch.zeros_like(x))
        values = self.start(x, inputs)
        known = self.known(inputs)  # partly observed latents: a point mass on each known label
        with data_plate(x.shape[0], num_data, x.device), kl_scale(self.beta(beta)):
            for node in self.nodes:
                self.sample(node, values, known=known.get(node.site))
        return values[self.nodes[-1].site]

    def log_q_known(self, site: str, x: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        """sum of log q(y = label | x, inputs) over the datapoints whose label of the partly observed latent
        ``site`` is known: the classifier term of a semi-supervised VAE (Kingma et al., 2014), a scalar.

        :raises ValueError: ``site`` is no partly observed latent, or its encoder reads another latent.
        """
        node = next((n for n in self.nodes if n.site == site), None)
        if site not in self.partial or node is None:
            raise ValueError(f"{site!r} is not a partially observed latent of this guide ({sorted(self.partial)})")
        values = self.start(x, labels)
        if not set(node.parents) <= set(values):
            raise ValueError(f"q({site} | {', '.join(node.parents)}) reads a latent; its classifier term needs x alone")
        known = self.known(labels)[site]
        fn = self.conditionals[node.module](*(values[p] for p in node.parents))
        return torch.where(known >= 0, fn.log_prob(known.clamp(min=0)), 0.0).sum()
