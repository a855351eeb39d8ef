import pytest
import torch

from pyrovae.nets import Decoder, GaussianEncoder, mlp, positive_scale


@pytest.mark.parametrize(("data_dim", "latent_dim"), [(784, 50), (37, 2)])
def test_shapes_follow_the_arguments(data_dim: int, latent_dim: int):
    encoder = GaussianEncoder(data_dim, latent_dim, (32, 16), "tanh")
    loc, scale = encoder(torch.randn(4, data_dim))
    assert loc.shape == scale.shape == (4, latent_dim)
    assert Decoder(latent_dim, data_dim, (16,), "softplus")(torch.randn(3, 4, latent_dim)).shape == (3, 4, data_dim)


def test_positive_scale_is_finite_and_positive_at_extremes():
    raw = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4])
    scale = positive_scale(raw)
    assert torch.all(scale > 0) and torch.all(torch.isfinite(scale))
    assert scale[-1] == pytest.approx(1e4, rel=1e-4)  # linear, not exponential, growth


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ValueError, match="relu"):
        mlp(3, (4,), 2, "gelu")
