import torch

from pyrovae.inference.diagnostics import active_units, posterior_means, unit_activity

from conftest import make_vae


def test_posterior_means_are_the_encoder_means_over_all_batches():
    _, guide = make_vae()
    x = torch.bernoulli(torch.full((10, 12), 0.4))
    means = posterior_means(guide, x.split(4))
    assert set(means) == {"z"} and means["z"].shape == (10, 3)
    assert torch.allclose(means["z"], guide.encoder(x)[0])


def test_units_whose_mean_ignores_x_are_inactive():
    _, guide = make_vae(latent_dim=3)
    with torch.no_grad():  # unit 0 follows the data strongly; units 1 and 2 ignore it
        last = guide.encoder.net[-1]
        last.weight.zero_()
        last.bias.zero_()
        guide.encoder.net[0].weight.fill_(1.0)
        last.weight[0].fill_(1.0)
    x = torch.bernoulli(torch.full((50, 12), 0.5))
    activity = unit_activity(posterior_means(guide, [x])["z"])
    assert activity[0] > 0.01 and torch.all(activity[1:] == 0)
    assert active_units(guide, [x]) == {"z": 1}
