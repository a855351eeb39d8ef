"""Amortized guides q(z | x) as Pyro guide functions."""

from pyrovae.guides.normal import NormalGuide

__all__ = ["NormalGuide"]
