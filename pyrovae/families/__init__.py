"""The registry of distribution families: priors, guides and likelihoods a spec can name.

A new family is one file in this package: a :class:`~pyrovae.families.base.Family`
subclass decorated with :func:`register`, and its import below. Everything else
(the spec language, the command line's choices, the objectives' checks) finds it
here by name and asks its :class:`~pyrovae.families.base.Capabilities`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyrovae.families.base import ROLES, Capabilities, Conditional, Family, FreePrior, Param

FAMILIES: dict[str, type[Family]] = {}  # name -> family class
ALIASES = {"diag": "normal"}  # names kept from before the registry: guide = "diag" is the Normal family


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: add a family to :data:`FAMILIES` under its ``name``."""
    if cls.name in FAMILIES:
        raise ValueError(f"a family named {cls.name!r} is registered already")
    FAMILIES[cls.name] = cls
    return cls


def names(role: str) -> tuple[str, ...]:
    """The names a spec can give for ``role`` (prior, guide or likelihood), in registration order."""
    return tuple(n for n, cls in FAMILIES.items() if role in cls.roles) + tuple(
        alias for alias, n in ALIASES.items() if role in FAMILIES[n].roles
    )


def get(name: str, role: str, options: Mapping[str, Any] | None = None) -> Family:
    """The family ``name`` for ``role``, with its ``options``.

    :raises ValueError: naming the role's families when ``name`` is none of them.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    cls = FAMILIES.get(ALIASES.get(name, name))
    if cls is None or role not in cls.roles:
        raise ValueError(f"unknown {role} {name!r}; choose from {', '.join(names(role))}")
    return cls(options=dict(options or {}))


# The families; each file registers its own.
from pyrovae.families import (  # noqa: E402, F401
    bernoulli,
    categorical,
    continuous_bernoulli,
    diagonal_normal,
    full_normal,
    gaussian,
    iaf,
    laplace,
    mixture,
    negative_binomial,
    point_mass,
    poisson,
    student_t,
    vamp,
    zero_inflated_poisson,
)

__all__ = [
    "FAMILIES",
    "ROLES",
    "Capabilities",
    "Conditional",
    "Family",
    "FreePrior",
    "Param",
    "get",
    "names",
    "register",
]
