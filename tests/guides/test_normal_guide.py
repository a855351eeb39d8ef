import torch
from pyro import poutine

from pyrovae.guides import NormalGuide
from pyrovae.nets import GaussianEncoder


def test_guide_site_is_a_diagonal_normal_in_the_data_plate():
    guide = NormalGuide(GaussianEncoder(10, 4, (16, 16)))
    x = torch.rand(6, 10)
    site = poutine.trace(guide).get_trace(x).nodes["z"]
    assert site["fn"].batch_shape == (6,) and site["fn"].event_shape == (4,)
    assert site["fn"].has_rsample and not site["is_observed"]
    (frame,) = site["cond_indep_stack"]
    assert (frame.name, frame.dim) == ("data", -1)
    assert torch.all(site["fn"].base_dist.scale > 0)


def test_posterior_matches_the_encoder():
    encoder = GaussianEncoder(10, 4, (16,))
    x = torch.rand(3, 10)
    loc, scale = encoder(x)
    q = NormalGuide(encoder).posterior(x)
    assert torch.equal(q.mean, loc) and torch.allclose(q.variance, scale**2)
