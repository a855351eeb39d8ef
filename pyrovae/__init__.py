"""pyrovae: variational autoencoders as Pyro probabilistic programs.

Generative models live in :mod:`pyrovae.models`, amortized guides in
:mod:`pyrovae.guides`, objectives, bounds and the training loop in
:mod:`pyrovae.inference`. This top-level module stays import-light so that the
``pyrovae`` command starts quickly.
"""

__version__ = "0.1.0"
