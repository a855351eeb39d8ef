import math

import pytest
import torch
from matplotlib.patches import Ellipse

from pyrovae.inference.diagnostics import kl_per_dim
from pyrovae.viz.latent_figures import latent_map_figure, manifold_figure, traverse_figure
from pyrovae.viz.latent_space import (
    class_arithmetic,
    decode,
    interpolate,
    lerp,
    pca_2d,
    prior_quantiles,
    slerp,
    traverse,
)

from conftest import make_vae


def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.acos(torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1))


def test_lerp_and_slerp_start_and_end_at_the_endpoints():
    z0, z1, t = torch.randn(4, 5), torch.randn(4, 5), torch.linspace(0, 1, 7)
    for path in (lerp(z0, z1, t), slerp(z0, z1, t)):
        assert path.shape == (4, 7, 5)
        assert torch.allclose(path[:, 0], z0, atol=1e-6) and torch.allclose(path[:, -1], z1, atol=1e-6)
    assert torch.allclose(lerp(z0, z1, t)[:, 3], (z0 + z1) / 2)


def test_slerp_moves_along_the_great_circle_with_a_linear_norm():
    z0, z1, t = torch.randn(3, 6), 2 * torch.randn(3, 6), torch.rand(5)
    path = slerp(z0, z1, t)  # (3, 5, 6)
    omega = angle(z0, z1)[:, None]  # (3, 1)
    assert torch.allclose(angle(path, z0[:, None]), t * omega, atol=1e-4)  # angle travelled grows linearly
    assert torch.allclose(angle(path, z1[:, None]), (1 - t) * omega, atol=1e-4)
    assert torch.allclose(path.norm(dim=-1), (1 - t) * z0.norm(dim=-1)[:, None] + t * z1.norm(dim=-1)[:, None])


def test_slerp_of_equal_norms_is_whites_formula_and_parallel_vectors_fall_back_to_lerp():
    z0, z1, t = torch.randn(6), torch.randn(6), torch.linspace(0, 1, 5)
    z1 = z1 * z0.norm() / z1.norm()
    omega = angle(z0, z1)
    white = (torch.sin((1 - t) * omega)[:, None] * z0 + torch.sin(t * omega)[:, None] * z1) / torch.sin(omega)
    assert torch.allclose(slerp(z0, z1, t), white, atol=1e-5)
    assert torch.allclose(slerp(z0, 3 * z0, t), lerp(z0, 3 * z0, t), atol=1e-5)


@pytest.mark.parametrize("how", ["linear", "spherical"])
def test_interpolate_endpoints_decode_the_two_encodings(how: str):
    model, guide = make_vae(data_dim=12, latent_dim=3)
    x0, x1 = torch.bernoulli(torch.full((2, 4, 12), 0.5))
    images = interpolate(model, guide, x0, x1, steps=6, how=how)
    assert images.shape == (4, 6, 12)
    assert torch.allclose(images[:, 0], decode(model, guide.encoder(x0)[0]), atol=1e-6)
    assert torch.allclose(images[:, -1], decode(model, guide.encoder(x1)[0]), atol=1e-6)
    assert not torch.allclose(images[:, 0], images[:, -1])


def test_traverse_orders_rows_by_kl_and_sweeps_one_dimension():
    model, guide = make_vae(data_dim=12, latent_dim=3)
    with torch.no_grad():  # loc = (0, 2, 1) for every x, so KL per dimension is largest for 1, then 2, then 0
        last = guide.encoder.net[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[:3] = torch.tensor([0.0, 2.0, 1.0])
    x = torch.bernoulli(torch.full((20, 12), 0.5))
    kl = kl_per_dim(model, guide, [x])["z"]
    values = torch.linspace(-2, 2, 5)
    dims, images = traverse(model, guide, x[:1], kl, values)
    assert dims.tolist() == [1, 2, 0]
    for row, u in enumerate(dims.tolist()):
        z = torch.tensor([0.0, 2.0, 1.0]).repeat(5, 1)
        z[:, u] = values
        assert torch.allclose(images[row], decode(model, z), atol=1e-6)


def test_class_arithmetic_uses_class_means():
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 2])
    (row,) = class_arithmetic(z, labels, [(0, 1, 2)])
    assert torch.equal(row, torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, 5.0], [7.0, 3.0]]))
    with pytest.raises(ValueError, match=r"classes \[7\]"):
        class_arithmetic(z, labels, [(0, 7, 2)])


def test_pca_finds_the_two_directions_of_largest_variance():
    centred = torch.randn(200, 4, dtype=torch.float64)
    q, _ = torch.linalg.qr(centred - centred.mean(0))  # orthonormal, zero-mean columns
    scores = q * torch.tensor([3.0, 0.1, 2.0, 0.1], dtype=torch.float64)  # variances 9 : 0.01 : 4 : 0.01
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    points, explained = pca_2d(scores @ rotation.T + 5.0)
    assert torch.allclose(points.abs(), scores[:, [0, 2]].abs(), atol=1e-9)  # up to the sign of each axis
    assert torch.allclose(explained, torch.tensor([9.0, 4.0], dtype=torch.float64) / 13.02)


def test_prior_quantiles_are_the_normal_inverse_cdf():
    model, _ = make_vae(latent_dim=2)
    q = prior_quantiles(model, 3, low=0.1, high=0.9)
    expected = math.sqrt(2) * torch.erfinv(2 * torch.tensor([0.1, 0.5, 0.9]) - 1)
    assert torch.allclose(q, expected[:, None].expand(3, 2), atol=1e-5)


def test_latent_map_without_labels_has_one_colour_and_no_legend():
    fig = latent_map_figure(torch.randn(50, 5))
    (ax,) = fig.axes
    (points,) = ax.collections
    assert ax.get_legend() is None and len(points.get_facecolors()) == 1
    assert "PCA" in ax.get_title()


def test_latent_map_of_a_2d_latent_numbers_dimensions_from_0_and_names_codes_of_an_autoencoder():
    z = torch.randn(50, 2)
    (ax,) = latent_map_figure(z).axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z[0]", "z[1]")
    assert ax.get_title().startswith("Posterior means E_q[z | x]")
    (ax,) = latent_map_figure(z, deterministic=True).axes
    assert ax.get_title().startswith("Codes f(x)") and "E_q" not in ax.get_title()


def test_latent_map_draws_the_priors_1_and_2_sigma_contours_beside_the_class_legend():
    z, labels = 10 * torch.randn(60, 2), torch.arange(60) % 3
    prior = (torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5]))
    (ax,) = latent_map_figure(z, labels, prior=prior).axes
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert [(e.center, e.width, e.height) for e in ellipses] == [((0.0, 1.0), 2.0, 1.0), ((0.0, 1.0), 4.0, 2.0)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]  # the class legend survives
    with pytest.raises(ValueError, match="D = 2"):
        latent_map_figure(torch.randn(50, 5), prior=prior)


def test_manifold_has_a_grid_point_at_the_prior_median_and_says_0():
    model, _ = make_vae(data_dim=16, latent_dim=2)
    (ax,) = manifold_figure(model, (1, 4, 4)).axes
    quantiles = ["-1.64", "-0.60", "0.00", "0.60", "1.64"]  # the 5%, 27.5%, 50%, 72.5% and 95% quantiles
    assert [t.get_text() for t in ax.get_xticklabels()] == quantiles
    assert [t.get_text() for t in ax.get_yticklabels()] == quantiles[::-1]  # rows from the top
    assert (ax.get_xlabel().split()[0], ax.get_ylabel()) == ("z[0]", "z[1]")


def test_traverse_rows_are_labelled_z_u_from_0():
    model, guide = make_vae(data_dim=16, latent_dim=3)
    kl = torch.tensor([0.5, 2.0, 1.0])
    (ax,) = traverse_figure(model, guide, torch.ones(1, 16), kl, (1, 4, 4)).axes
    assert [t.get_text().split()[0] for t in ax.get_yticklabels()] == ["z[1]", "z[2]", "z[0]"]
