"""Figures of a model with a label input (a cvae: p(x | z, y), q(z | x, y)): ``pyrovae plot --label``."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pyrovae import cli, spec
from pyrovae.validate import UsageError
from pyrovae.viz import figures, latent_space

from conftest import one_error_line, write_idx

TINY = ["--hidden", "16", "--batch-size", "40", "--epochs", "1", "--no-progress", "--device", "cpu"]
CVAE = {  # the built-in cvae's spec, small: z of 2 dimensions, one hidden layer of 8
    "likelihood": "bernoulli",
    "guide": "diag",
    "hidden": [8],
    "inputs": {"y": 10},
    "latent": [{"name": "z", "size": 2, "encoder": {"given": ["x", "y"]}}],
    "x": {"given": ["z", "y"]},
}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> list[str]:
    """The ``train`` options of a labelled ``--dataset mnist`` directory: 80 training, 40 test digits, labels 0..9."""
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 80), ("t10k", 40)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return ["--dataset", "mnist", "--data-dir", str(root), *TINY]


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory, labelled: list[str]) -> Path:
    """A one-epoch cvae with a 2-D latent."""
    out = tmp_path_factory.mktemp("cvae") / "run"
    assert cli.main(["train", "--model", "cvae", "--out", str(out), *labelled, "--latent-dim", "2"]) == 0
    return out


def small_cvae() -> tuple[torch.nn.Module, torch.nn.Module]:
    model, guide = spec.build(CVAE, data_dim=16)
    guide.eval()
    return model, guide


def decoder_mean(model: torch.nn.Module, z: torch.Tensor, label: int) -> torch.Tensor:
    """p(x | z, y)'s mean from the decoder itself, y = one_hot(label)."""
    y = F.one_hot(torch.full((z.shape[0],), label), 10).to(z)
    return model.conditionals["decoder"](z, y).mean


@pytest.mark.parametrize("label", [None, 3])
@pytest.mark.parametrize("kind", list(figures.DRAW))
def test_every_latent_kind_of_a_cvae_draws_a_png(cvae_run: Path, tmp_path: Path, kind: str, label: int | None, capsys):
    out = tmp_path / f"{kind}.png"
    chosen = [] if label is None else ["--label", str(label)]
    assert cli.main(["plot", str(cvae_run), "--kind", kind, *chosen, "--out", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    image = pixels(out)
    assert (image < 128).mean() > 0.01 and (image > 128).mean() > 0.01  # something drawn


@pytest.mark.parametrize("kind", ["samples", "manifold", "reconstructions", "traverse"])
def test_the_label_changes_what_is_decoded(cvae_run: Path, tmp_path: Path, kind: str):
    images = []
    for label in (3, 5):
        out = tmp_path / f"{kind}-{label}.png"
        argv = ["plot", str(cvae_run), "--kind", kind, "--label", str(label), "--out", str(out), "--device", "cpu"]
        assert cli.main(argv) == 0
        images.append(pixels(out))
    assert images[0].shape == images[1].shape and not np.array_equal(*images)


def test_a_cvae_figure_without_label_draws_one_row_or_panel_per_class(cvae_run: Path):
    options = figures.PlotOptions(device="cpu")
    t = figures._test_set(cvae_run, figures.PlotOptions(device="cpu"))
    (ax,) = figures.DRAW["samples"](t, options).axes
    assert [tick.get_text() for tick in ax.get_yticklabels()] == [f"y = {c}" for c in range(10)]
    panels = figures.DRAW["manifold"](t, options).axes
    assert [ax.get_title() for ax in panels] == [f"y = {c}" for c in range(10)]


def test_decoding_with_a_label_is_the_decoder_fed_its_one_hot():
    model, _ = small_cvae()
    z = torch.randn(6, 2)
    assert torch.allclose(latent_space.decode(model, z, inputs=(torch.full((6,), 7),)), decoder_mean(model, z, 7))
    z0, z1, images = latent_space.manifold(model, 3, inputs=(torch.tensor([4]),))
    grid = torch.stack(torch.broadcast_tensors(z0[None, :], z1[:, None]), dim=-1).reshape(-1, 2)
    assert torch.allclose(images, decoder_mean(model, grid, 4))


def test_the_encoder_reads_each_image_with_its_own_label_and_the_decoder_the_chosen_one():
    model, guide = small_cvae()
    x, y = torch.bernoulli(torch.full((5, 16), 0.5)), torch.tensor([0, 1, 2, 3, 4])
    torch.manual_seed(1)
    z = guide(x, y)  # z ~ q(z | x, y), each image's own y
    torch.manual_seed(1)
    redrawn = latent_space.reconstruct(model, guide, (x, y), inputs=(torch.full((5,), 9),))
    assert torch.allclose(redrawn, decoder_mean(model, z, 9))
    encoder = guide.conditionals["encoder_z"]
    means = encoder(x, F.one_hot(y, 10).float()).mean
    assert torch.allclose(latent_space.encode(guide, [(x, y)])[1], means, atol=1e-6)
    path = latent_space.interpolate(model, guide, (x[:2], y[:2]), (x[2:4], y[2:4]), steps=3, inputs=(y[:2],))
    assert torch.allclose(path[0, 0], decoder_mean(model, means[:1], 0)[0], atol=1e-6)
    assert torch.allclose(path[1, -1], decoder_mean(model, means[3:4], 1)[0], atol=1e-6)


def test_a_cvae_latent_map_encodes_with_the_true_labels_and_colours_by_them(cvae_run: Path):
    t = figures._test_set(cvae_run, figures.PlotOptions(device="cpu"))
    assert len(t.given) == 1 and torch.equal(t.given[0], t.labels)
    (ax,) = figures.DRAW["latent-map"](t, figures.PlotOptions()).axes
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [str(c) for c in range(10)]
    (ax,) = figures.DRAW["latent-map"](t, figures.PlotOptions(label=3)).axes
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["3"]
    assert ax.get_title().startswith(f"Posterior means E_q[z | x] of {int((t.labels == 3).sum())} test images")


def test_interpolation_pairs_of_a_labelled_model_share_a_class():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 0])
    i0, i1 = latent_space.image_pairs(8, 5, labels=labels)
    assert torch.equal(labels[i0], labels[i1]) and labels[i0].tolist() == [0, 1, 2]  # class 3 has one image
    assert not (i0 == i1).any()
    plain = latent_space.image_pairs(8, 2)
    assert torch.equal(torch.cat(plain), torch.randperm(8, generator=torch.Generator().manual_seed(0))[:4])
    assert latent_space.arithmetic_labels([(7, 1, 4)]).tolist() == [[7, 1, 4, 7]]
    assert latent_space.arithmetic_labels([(7, 1, 4)], 2).tolist() == [[2, 2, 2, 2]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kind", "samples", "--label", "10"], "--label must be a class of y in 0..9, got 10"),
        (["--kind", "manifold", "--label", "-1"], "--label must be a class of y in 0..9, got -1"),
        (["--kind", "curves", "--label", "3"], "--kind curves draws the training curves, which no label conditions"),
    ],
)
def test_a_cvae_refuses_a_label_that_cannot_apply(cvae_run: Path, capsys, argv: list[str], message: str):
    assert message in one_error_line(capsys, 2, cli.main(["plot", str(cvae_run), *argv]))


def test_a_prior_given_the_label_has_a_manifold_per_class(labelled: list[str], tmp_path: Path):
    path = tmp_path / "prior_given_y.toml"
    path.write_text(
        'likelihood = "bernoulli"\n[inputs]\ny = 10\n'
        '[[latent]]\nname = "z"\nsize = 2\ngiven = ["y"]\nencoder = { given = ["x", "y"] }\n[x]\ngiven = ["z", "y"]\n'
    )
    out = tmp_path / "run"
    assert cli.main(["train", "--spec", str(path), "--out", str(out), *labelled]) == 0
    assert cli.main(["plot", str(out), "--kind", "manifold", "--label", "2", "--device", "cpu"]) == 0
    t = figures._test_set(out, figures.PlotOptions(device="cpu"))
    panels = figures.DRAW["manifold"](t, figures.PlotOptions()).axes
    ticks = [tuple(tick.get_text() for tick in ax.get_xticklabels()) for ax in panels]
    assert len(panels) == 10 and len(set(ticks)) > 1  # each class's own prior p(z | y)


def test_the_library_refuses_a_label_for_a_model_without_one(trained):
    with pytest.raises(UsageError, match="no label input"):
        figures.plot_run(trained[1], "samples", options=figures.PlotOptions(label=3, device="cpu"))
