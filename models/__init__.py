"""Generative models p(x, z) as Pyro model functions."""

from pyrovae.models.vae import VAE

__all__ = ["VAE"]
