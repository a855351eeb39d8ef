"""Visualization: image grids and matplotlib figures of a trained run.

:mod:`~pyrovae.viz.latent_space` is the latent-space maths (tensors, no matplotlib);
:mod:`~pyrovae.viz.plots` and :mod:`~pyrovae.viz.latent_figures` draw; :mod:`~pyrovae.viz.figures`
is ``pyrovae plot``, every figure of a run directory by kind.
"""
