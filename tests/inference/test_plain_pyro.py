"""Any Pyro model is first class: a plain ``model(x)``/``guide(x)`` gets beta and N / B from the handlers."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from test_trace_elbo import _HostReads
from torch import nn

from pyrovae.data import Dataset
from pyrovae.inference import TrainConfig, Trainer, evaluate_elbo, iwae_bound, log_weights, make_objective
from pyrovae.inference.handlers import ParticleBroadcastError, takes_scales, with_scales
from pyrovae.inference.parameters import load_params
from pyrovae.primitives import data_plate, kl_scale

from conftest import binary_images, options

D, L, N = 12, 2, 48  # pixels, latent dimensions, training rows
OBJECTIVES = [("elbo", 1, "standard"), ("mf-elbo", 1, "standard"), ("elbo", 3, "standard"),
              ("iwae", 5, "standard"), ("iwae", 5, "dreg"), ("renyi", 5, "standard")]  # fmt: skip


def nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return nn.Linear(L, D).double(), nn.Linear(D, 2 * L).double()


def posterior(encoder: nn.Module, x: torch.Tensor) -> dist.Distribution:
    loc, raw_scale = encoder(x).chunk(2, dim=-1)
    return dist.Normal(loc, nn.functional.softplus(raw_scale) + 1e-4).to_event(1)


def plain_vae(decoder: nn.Module, encoder: nn.Module, *, flatten: bool = False):
    """A VAE that knows nothing of pyrovae: ``model(x)``, ``guide(x)``, one plate ``"data"`` at dim -1."""

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(L), 1.0).to_event(1))
            z = z.view(x.shape[0], -1) if flatten else z  # flatten: cannot broadcast over particles
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", posterior(encoder, x))

    return model, guide


def pyrovae_vae(decoder: nn.Module, encoder: nn.Module):
    """The same VAE written with ``data_plate`` and ``kl_scale``, called with beta and num_data."""

    def model(x, *, beta=1.0, num_data=None):
        pyro.module("decoder", decoder)
        with data_plate(x.shape[0], num_data, x.device):
            with kl_scale(beta):
                z = pyro.sample("z", dist.Normal(x.new_zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x, *, beta=1.0, num_data=None):
        pyro.module("encoder", encoder)
        with data_plate(x.shape[0], num_data, x.device), kl_scale(beta):
            pyro.sample("z", posterior(encoder, x))

    return model, guide


def global_vae(decoder: nn.Module, encoder: nn.Module, *, plate: str | None = None, handwritten: bool = False):
    """A VAE with a global latent logit offset ``mu`` (D,) outside the data plate (in ``plate`` at dim -1 if given).

    ``handwritten``: beta and N / B applied by ``data_plate`` and ``kl_scale``, called with the keywords.
    """

    def sample_mu(fn):
        if plate is None:
            return pyro.sample("mu", fn.to_event(1))
        with pyro.plate(plate, D, dim=-1):
            return pyro.sample("mu", fn).unsqueeze(-2)  # (..., 1, D): the batch's dim -2 is the particles'

    def model(x, beta=1.0, num_data=None):
        pyro.module("decoder", decoder)
        with kl_scale(beta) if handwritten else poutine.scale(scale=1.0):
            mu = sample_mu(dist.Normal(x.new_zeros(D), 1.0))
        with data_plate(x.shape[0], num_data if handwritten else None, x.device):
            with kl_scale(beta) if handwritten else poutine.scale(scale=1.0):
                z = pyro.sample("z", dist.Normal(x.new_zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z) + mu).to_event(1), obs=x)

    def guide(x, beta=1.0, num_data=None):
        pyro.module("encoder", encoder)
        loc = pyro.param("mu_loc", x.new_zeros(D))
        scale = pyro.param("mu_scale", x.new_full((D,), 0.1), constraint=dist.constraints.positive)
        with kl_scale(beta) if handwritten else poutine.scale(scale=1.0):
            sample_mu(dist.Normal(loc, scale))
        with data_plate(x.shape[0], num_data if handwritten else None, x.device), kl_scale(beta if handwritten else 1):
            pyro.sample("z", posterior(encoder, x))

    if handwritten:
        return model, guide
    return (lambda x: model(x)), (lambda x: guide(x))  # plain: no beta, no num_data


def data(rows: int = 64) -> Dataset:
    x = torch.as_tensor(binary_images(rows, dim=D), dtype=torch.float64)
    return Dataset("tiny", {"train": x[:N], "test": x[N:]})


def loss_and_grads(objective, model, guide, x, seed: int = 1, **kwargs) -> tuple[float, list[torch.Tensor]]:
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model, guide, x, **kwargs)
    params = [p for _, p in sorted(pyro.get_param_store().named_parameters())]
    return loss.item(), list(torch.autograd.grad(loss, params, allow_unused=True))


def assert_same(first: tuple[float, list], second: tuple[float, list]) -> None:
    assert first[0] == pytest.approx(second[0], rel=1e-12)
    for a, b in zip(first[1], second[1], strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
def test_handled_sites_carry_the_scales_masks_and_frames_of_data_plate_and_kl_scale(beta: float):
    x = data().splits["train"][:16]
    (model, guide), (twin_model, twin_guide) = plain_vae(*nets()), pyrovae_vae(*nets())
    for plain, twin in ((model, twin_model), (guide, twin_guide)):
        handled = poutine.trace(with_scales(plain, beta=beta, num_data=N)).get_trace(x)
        written = poutine.trace(twin).get_trace(x, beta=beta, num_data=N)
        sites, ours = ({n: s for n, s in t.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
                       for t in (written, handled))  # fmt: skip
        assert sites.keys() == ours.keys()
        for name, site in sites.items():
            ours = handled.nodes[name]
            assert (ours["scale"], ours["mask"]) == (site["scale"], site["mask"]), name
            assert [(f.name, f.dim, f.size, f.full_size) for f in ours["cond_indep_stack"]] == [
                (f.name, f.dim, f.size, f.full_size) for f in site["cond_indep_stack"]
            ], name


@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
@pytest.mark.parametrize(("name", "particles", "gradient"), OBJECTIVES)
def test_plain_model_has_the_loss_and_gradients_of_its_pyrovae_twin(name, particles, gradient, beta):
    x = data().splits["train"][:16]
    decoder, encoder = nets()
    objective = make_objective(name, **options(name, particles, gradient))
    model, guide = plain_vae(decoder, encoder)
    handled = loss_and_grads(
        objective, with_scales(model, beta=beta, num_data=N), with_scales(guide, beta=beta, num_data=N), x
    )
    written = loss_and_grads(objective, *pyrovae_vae(decoder, encoder), x, beta=beta, num_data=N)
    assert_same(handled, written)


@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
@pytest.mark.parametrize(("name", "particles", "gradient"), [o for o in OBJECTIVES if o[0] != "renyi"])
def test_plain_vae_trains_in_the_trainer_as_its_pyrovae_twin(name, particles, gradient, beta):
    dataset, x = data(), data().splits["train"]
    decoder, encoder = nets()
    config = TrainConfig(batch_size=16, lr=1e-2, objective=name, objective_options=options(name, particles, gradient))
    runs, initial = [], None
    for pair in (plain_vae(decoder, encoder), pyrovae_vae(decoder, encoder)):
        trainer = Trainer(*pair, dataset, config, progress=False)
        initial = initial or {n: p.detach().clone() for n, p in trainer.params.items()}
        load_params(initial)
        pyro.set_rng_seed(1)
        losses = [trainer.step(x[i : i + 16], beta).item() for i in (0, 16, 32)]
        runs.append((losses, {n: p.detach().clone() for n, p in trainer.params.items()}))
    assert trainer.takes_scales == (True, True)
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-12)
    for n, p in runs[0][1].items():
        assert not torch.equal(p, initial[n]) and torch.allclose(p, runs[1][1][n], rtol=0, atol=1e-12), n


@pytest.mark.parametrize(("name", "particles", "gradient"), [o for o in OBJECTIVES if o[1] in (1, 5)])
def test_plain_vae_epochs_record_every_metric(name, particles, gradient):
    config = TrainConfig(batch_size=16, lr=1e-2, objective=name, objective_options=options(name, particles, gradient))
    trainer = Trainer(*plain_vae(*nets()), data(), config, progress=False)
    assert trainer.takes_scales == (False, False) and trainer.global_latents == []
    rows = [trainer.train_epoch() for _ in range(2)]
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("train_elbo", "test_elbo", "kl", "train_loss"))
        assert row["train_elbo"] == pytest.approx(row["reconstruction"] - row["kl"])
        assert len(row["kl_per_dim"]["z"]) == L and 0 <= row["active_units"] <= L


def test_a_global_latent_gets_beta_but_no_subsample_scale():
    x = data().splits["train"][:16]
    model, guide = global_vae(*nets())
    for fn in (model, guide):
        trace = poutine.trace(with_scales(fn, beta=0.5, num_data=N)).get_trace(x)
        assert trace.nodes["mu"]["scale"] == 0.5 and not trace.nodes["mu"]["cond_indep_stack"]
        assert trace.nodes["z"]["scale"] == pytest.approx(0.5 * N / 16, rel=1e-15)
    assert trace.nodes["z"]["cond_indep_stack"][0].full_size == N


@pytest.mark.parametrize("name", ["elbo", "mf-elbo"])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_a_global_latent_has_the_elbo_of_its_handwritten_twin(name: str, beta: float):
    x = data().splits["train"][:16]
    decoder, encoder = nets()
    model, guide = global_vae(decoder, encoder)
    objective = make_objective(name)
    handled = loss_and_grads(
        objective, with_scales(model, beta=beta, num_data=N), with_scales(guide, beta=beta, num_data=N), x
    )
    written = loss_and_grads(objective, *global_vae(decoder, encoder, handwritten=True), x, beta=beta, num_data=N)
    assert_same(handled, written)


def test_a_global_latent_trains_with_the_elbo():
    trainer = Trainer(*global_vae(*nets()), data(), TrainConfig(batch_size=16, lr=1e-2), progress=False)
    assert trainer.global_latents == ["mu"]
    rows = [trainer.train_epoch() for _ in range(4)]
    assert all(math.isfinite(r["test_elbo"]) and r["kl_per_dim"].keys() == {"z"} for r in rows)
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"]


def test_evaluation_counts_a_global_latent_once():
    # one batch: evaluate_elbo is the ELBO of the batch as a data set, -Trace_ELBO / n with the same draws
    x = data().splits["train"][:16]
    model, guide = global_vae(*nets())
    pyro.set_rng_seed(2)
    row = evaluate_elbo(model, guide, [x])
    pyro.set_rng_seed(2)
    loss = make_objective("elbo").differentiable_loss(model, guide, x).item()
    assert row["elbo"] == pytest.approx(-loss / 16, rel=1e-12)


@pytest.mark.parametrize("plate", [None, "features"])  # features: a plate at dim -1 as large as the batch
def test_per_datapoint_bounds_refuse_a_global_latent(plate: str | None):
    x = data().splits["train"][:D]  # batch size D: the size of the features plate
    model, guide = global_vae(*nets(), plate=plate)
    where = "is outside a plate at dim -1" if plate is None else "is in plate 'features' at dim -1, outside the data"
    for bound in (log_weights, iwae_bound):
        with pytest.raises(ValueError, match=f"site 'mu' {where}"):
            bound(model, guide, x, num_particles=3)
    trainer = Trainer(
        model,
        guide,
        data(),
        TrainConfig(batch_size=D, objective="iwae", objective_options={"num_particles": 5}),
        progress=False,
    )
    with pytest.raises(ValueError, match=r"site 'mu' .*train this model with the ELBO"):
        trainer.step(x, 1.0)


@pytest.mark.parametrize(("name", "particles"), [("iwae", 5), ("elbo", 3), ("renyi", 5)])
def test_a_model_that_cannot_broadcast_over_particles_gets_one_clear_error(name: str, particles: int):
    model, guide = plain_vae(*nets(), flatten=True)
    trainer = Trainer(
        model, guide, data(), TrainConfig(objective=name, objective_options=options(name, particles)), progress=False
    )
    with pytest.raises(ParticleBroadcastError, match="broadcast over a leading particle dimension at dim -2"):
        trainer.step(data().splits["train"][:16], 1.0)


def test_a_model_that_cannot_broadcast_trains_with_one_particle():
    trainer = Trainer(*plain_vae(*nets(), flatten=True), data(), TrainConfig(batch_size=16), progress=False)
    assert math.isfinite(trainer.train_epoch()["test_elbo"])


def test_a_data_plate_under_another_name_is_refused():
    def model(x):
        with pyro.plate("batch", x.shape[0], dim=-1):
            pyro.sample("x", dist.Bernoulli(0.5 * x.new_ones(D)).to_event(1), obs=x)

    with pytest.raises(ValueError, match="no sample site is in a plate named 'data' at dim -1, but plate 'batch'"):
        Trainer(model, lambda x: None, data(), progress=False)


def test_takes_scales_needs_both_keywords_by_name():
    model, _ = pyrovae_vae(*nets())
    assert takes_scales(model) and not takes_scales(lambda x, **kwargs: None)
    assert not takes_scales(nn.Linear(2, 2))  # forward(input)
    with pytest.raises(TypeError, match="takes 'beta' but not the other of beta and num_data"):
        takes_scales(lambda x, beta=1.0: None)


@pytest.mark.parametrize(("name", "particles", "gradient"), OBJECTIVES)
def test_plain_model_steps_read_nothing_back_to_the_host(monkeypatch, name: str, particles: int, gradient: str):
    config = TrainConfig(batch_size=16, objective=name, objective_options=options(name, particles, gradient))
    trainer = Trainer(*global_vae(*nets()) if "elbo" in name else plain_vae(*nets()), data(), config, progress=False)
    x = data().splits["train"]
    reads = _HostReads(monkeypatch)
    with pyro.validation_enabled(False):  # as in Trainer.train_epoch
        for i in (0, 16, 32):
            trainer.step(x[i : i + 16], 0.5)
    assert reads.count == 0
