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

from pyrovae.graph import LatentGraph
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
    ) -> torch.Tensor:
        """Sample every latent; returns the last one sampled (z for a one-latent guide)."""
        self.register()
        values = self.start(x, inputs)
        with data_plate(x.shape[0], num_data, x.device), kl_scale(self.beta(beta)):
            for node in self.nodes:
                self.sample(node, values)
        return values[self.nodes[-1].site]
