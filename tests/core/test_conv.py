import pytest
import torch

from pyrovae.conv import ConvDecoderNet, ConvEncoderNet
from pyrovae.nets import make_net


def test_encoder_reads_the_image_and_the_conditioning_with_any_leading_dims():
    net = ConvEncoderNet((1, 28, 28), extra_dim=10, out_dim=6, hidden=(16,))
    x = torch.rand(3, 784 + 10)
    assert net(x).shape == (3, 6) and net(x.expand(2, 3, 794)).shape == (2, 3, 6)
    changed = x.clone()
    changed[:, -1] += 1.0  # the label part reaches the output
    assert not torch.allclose(net(x), net(changed))


def test_decoder_writes_k_maps_per_pixel_channel_major():
    net = ConvDecoderNet(5, (1, 28, 28), params_per_pixel=2, hidden=(16,))
    z = torch.randn(4, 3, 5)  # particles x batch x latent
    out = net(z)
    assert out.shape == (4, 3, 2 * 784)
    assert torch.allclose(out[1, 2], net(z[1, 2]), atol=1e-6)  # rows do not mix through the reshapes
    maps = net.deconv[:-1](net.fc(z[1, 2:3]).reshape(1, *net.grid))  # (1, 2, 28, 28)
    assert torch.allclose(out[1, 2, :784], maps[0, 0].flatten(), atol=1e-6)  # first map = first parameter


def test_non_image_sizes_are_a_clear_error_and_mlp_is_the_fallback():
    with pytest.raises(ValueError, match=r"multiples of 4.*--arch mlp"):
        ConvEncoderNet((1, 30, 30), 0, 4)
    assert isinstance(make_net(4, 6, (8,), image_shape=None, reads_image=True), torch.nn.Sequential)
