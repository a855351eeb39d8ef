"""A linear-Gaussian latent-variable model with closed-form log p(x) and posterior.

    z ~ N(0, I_d),  x | z ~ N(W z + b, s^2 I_n)
    p(x) = N(b, W W^T + s^2 I)
    p(z | x) = N(S W^T (x - b) / s^2, S),  S = (I + W^T W / s^2)^{-1}

With the exact posterior as guide every importance weight equals p(x), so every
bound equals log p(x) exactly: the reference for all bound and estimator tests.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pyrovae.primitives import data_plate, kl_scale


class LinearGaussian:
    def __init__(self, data_dim: int = 5, latent_dim: int = 3, noise: float = 0.7, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(data_dim, latent_dim, generator=g, dtype=torch.float64)
        self.b = torch.randn(data_dim, generator=g, dtype=torch.float64)
        self.noise = noise
        self.latent_dim = latent_dim
        eye = torch.eye(latent_dim, dtype=torch.float64)
        self.S = torch.linalg.inv(eye + self.W.T @ self.W / noise**2)

    def to(self, device: torch.device | str) -> LinearGaussian:
        """The same model with its constants on ``device`` (data from :meth:`sample_x` must be moved too)."""
        self.W, self.b, self.S = (t.to(device) for t in (self.W, self.b, self.S))
        return self

    def sample_x(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + self.noise * torch.randn(n, self.b.shape[0], generator=g, dtype=torch.float64)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.noise**2 * torch.eye(self.b.shape[0], dtype=torch.float64, device=self.b.device)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        loc = (x - self.b) @ self.W @ self.S.T / self.noise**2
        return dist.MultivariateNormal(loc, scale_tril=torch.linalg.cholesky(self.S))

    def model(self, x: torch.Tensor, *, beta: float = 1.0, num_data: int | None = None) -> None:
        zeros = torch.zeros(x.shape[0], self.latent_dim, dtype=torch.float64, device=x.device)
        with data_plate(x.shape[0], num_data, x.device):
            with kl_scale(beta):
                z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.noise).to_event(1), obs=x)

    def exact_guide(self, x: torch.Tensor, *, beta: float = 1.0, num_data: int | None = None) -> None:
        with data_plate(x.shape[0], num_data, x.device), kl_scale(beta):
            pyro.sample("z", self.posterior(x))

    def shifted_guide(self, x: torch.Tensor, *, shift: float = 0.5, beta: float = 1.0, num_data=None) -> None:
        """An imperfect guide: the exact posterior, shifted and widened."""
        q = self.posterior(x)
        with data_plate(x.shape[0], num_data, x.device), kl_scale(beta):
            pyro.sample("z", dist.MultivariateNormal(q.loc + shift, scale_tril=1.3 * q.scale_tril))

    def learnable_guide(self, perturbation: float = 0.0, seed: int = 0):
        """A guide with Pyro params ``A, c, L``: q(z | x) = N(x A + c, L L^T), started at the
        exact posterior with ``A`` perturbed by ``perturbation`` times standard Normal noise."""
        exact_a = self.W @ self.S.T / self.noise**2
        noise = torch.randn(exact_a.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

        def guide(x: torch.Tensor, *, beta: float = 1.0, num_data: int | None = None) -> None:
            a = pyro.param("A", exact_a + perturbation * noise)
            c = pyro.param("c", -self.b @ exact_a)
            scale_tril = pyro.param("L", torch.linalg.cholesky(self.S))
            with data_plate(x.shape[0], num_data, x.device), kl_scale(beta):
                pyro.sample("z", dist.MultivariateNormal(x @ a + c, scale_tril=scale_tril))

        return guide
