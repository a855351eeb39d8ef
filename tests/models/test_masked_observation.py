"""Conditioning on part of x: ``model(x, mask=m)`` counts the visible dimensions of x alone.

``poutine.mask`` masks a site's whole log-density per datapoint; x is one site whose event dimension holds
every pixel, so a per-pixel mask must act on the factors before they are summed.
"""

import pytest
import torch
from pyro import poutine

from pyrovae import spec
from pyrovae.inference import log_weights

D = 6
ONE_LATENT = (
    'likelihood = "{likelihood}"\nhidden = [8]\n[[latent]]\nname = "z"\nsize = 2\nencoder = {{ given = ["x"] }}\n'
)
ONE_LATENT += f'[x]\ngiven = ["z"]\nsize = {D}\n'
DATA = {
    "bernoulli": lambda: torch.bernoulli(torch.full((5, D), 0.4)),
    "gaussian": lambda: torch.randn(5, D),
    "poisson": lambda: torch.poisson(torch.full((5, D), 2.0)),
}


def vae(likelihood: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return spec.build(spec.tomllib.loads(ONE_LATENT.format(likelihood=likelihood)))


@pytest.mark.parametrize("likelihood", list(DATA))
def test_a_masked_log_density_is_that_of_the_visible_dimensions_alone(likelihood: str):
    model, guide = vae(likelihood)
    x = DATA[likelihood]()
    mask = torch.rand(5, D) < 0.5
    guide_trace = poutine.trace(guide).get_trace(x, mask=mask)
    masked = poutine.trace(poutine.replay(model, guide_trace)).get_trace(x, mask=mask).nodes["x"]
    full = poutine.trace(poutine.replay(model, guide_trace)).get_trace(x).nodes["x"]
    per_pixel = full["fn"].base_dist.log_prob(x)  # (B, D): the factors of the unmasked density
    torch.testing.assert_close(masked["fn"].log_prob(x), (per_pixel * mask).sum(-1))
    torch.testing.assert_close(full["fn"].log_prob(x), per_pixel.sum(-1))  # the mask changed something
    assert not torch.allclose(masked["fn"].log_prob(x), full["fn"].log_prob(x))
    assert log_weights(model, guide, x, mask=mask, num_particles=3).shape == (3, 5)


def test_the_guide_reads_hidden_dimensions_as_zero():
    _, guide = vae("gaussian")
    x, mask = torch.randn(4, D), torch.rand(4, D) < 0.5
    torch.manual_seed(1)
    masked = poutine.trace(guide).get_trace(x, mask=mask).nodes["z"]["fn"].base_dist.loc
    torch.manual_seed(1)
    zero_filled = poutine.trace(guide).get_trace(x * mask).nodes["z"]["fn"].base_dist.loc
    torch.testing.assert_close(masked, zero_filled)


@pytest.mark.parametrize(
    ("x", "mask", "message"),
    [
        (torch.zeros(4, D), torch.ones(4, D - 1, dtype=torch.bool), "mask must have x's shape"),
        (torch.zeros(4, D), torch.full((4, D), 0.5), "mask must be boolean or 0/1"),
        (None, torch.ones(4, D, dtype=torch.bool), "give x with it"),
    ],
)
def test_a_bad_mask_is_refused_by_name(x, mask, message: str):
    model, _ = vae("gaussian")
    with pytest.raises(ValueError, match=message):
        model(x, mask=mask, batch_size=4)
