"""Bad input: exit status 2, one line naming the problem and the fix, nothing created or changed."""

import shutil
from pathlib import Path

import pytest
import torch

from pyrovae import cli
from pyrovae.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint

from conftest import SMALL


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())} if path.is_dir() else {}


def fails(argv: list[str], message: str, capsys) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err, err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--epochs", "-3"], "--epochs must be a positive integer, got -3"),
        (["--batch-size", "-5"], "--batch-size must be a positive integer"),
        (["--latent-dim", "0"], "--latent-dim must be a list of positive integers, got (0,)"),
        (["--particles", "0"], "--particles must be a positive integer"),
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["--clip-norm", "-1"], "--clip-norm must be a finite number > 0"),
        (["--beta", "-0.5"], "--beta must be a finite number >= 0"),
        (["--beta", "1e300"], "--beta must be a finite number that float32 can hold (at most 3.4e+38), got 1e+300"),
        (["--objective", "renyi", "--alpha=-1e300"], "--alpha must be a finite number that float32 can hold"),
        (["--kl-anneal", "linear:0"], "--kl-anneal linear:0: STEPS must be a positive integer"),
        (["--kl-anneal", "cyclical:10:2"], "--kl-anneal cyclical:10:2: RATIO must be a number in (0, 1]"),
        (["--kl-anneal", "cyclical:0"], "--kl-anneal cyclical:0: PERIOD must be a positive integer"),
        (["--kl-anneal", "cosine"], "--kl-anneal cosine: not a KL annealing schedule (schedules: constant"),
        (["--likelihood", "gaussian", "--obs-scale", "1e-50"], "--obs-scale (or the spec's obs_scale) is 1e-50;"),
        (["--likelihood", "gaussian", "--obs-scale", "inf"], "--obs-scale (or the spec's obs_scale) is inf;"),
        (["--min-obs-scale", "1e-30"], "--min-obs-scale (or the spec's min_obs_scale) is 1e-30;"),
        (["--seed", "-1"], "--seed must be in 0 .. 4294967295"),
        (["--objective", "renyi", "--alpha", "1"], "--alpha must not be 1 (the Renyi bound of order 1 is the ELBO"),
        (["--alpha", "0.3"], "--alpha is an option of --objective renyi, not of elbo; drop it"),
        (["--objective", "renyi", "--iwae-gradient", "dreg"], "--iwae-gradient is an option of --objective iwae, not"),
        (["--device", "gpu"], "unknown device 'gpu'; choose from auto, cpu, cuda, cuda:N"),
        (["--dataset", "binarized-mnist"], "needs --data-dir, a directory holding binarized_mnist_train.amat"),
        (["--dataset", "binarized-mnist", "--data-dir", "{tmp}/nowhere"], "no such directory; it should hold"),
        (["--dataset", "mnist", "--data-dir", "{tmp}/file"], "not a directory; give the directory holding MNIST/raw"),
        (["--out", "{tmp}/file/run"], "is a file, so the run directory cannot be made"),
        (["--resume", "--force"], "--resume and --force contradict each other"),
        (["--resume"], "no such run directory; start a new run without --resume"),
    ],
)
def test_bad_train_options_create_nothing(tmp_path: Path, capsys, options: list[str], message: str):
    (tmp_path / "file").write_text("not a directory")
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    fails(["train", "--out", str(tmp_path / "run"), *options], message, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_without_cuda_is_refused(tmp_path: Path, capsys):
    fails(["train", "--out", str(tmp_path / "run"), "--device", "cuda"], "CUDA is not available here", capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar' (choose from"),
        (["--activation", "sigmoid"], "argument --activation: invalid choice: 'sigmoid' (choose from"),
        (["--objective", "iwa"], "argument --objective: invalid choice: 'iwa' (choose from"),
        (["--model", "pixelvae"], "argument --model: invalid choice: 'pixelvae' (choose from"),
        (["--likelihood", "zipf"], "argument --likelihood: invalid choice: 'zipf' (choose from"),
        (["--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
        (["--hidden", "400,x"], "argument --hidden: expected comma-separated integers, got '400,x'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_argument_errors_are_one_line_with_the_choices(tmp_path: Path, capsys, option: list[str], message: str):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--out", str(tmp_path / "run"), *option])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"pyrovae: error: {message}") and err.count("\n") == 1, err
    assert err.endswith("; see pyrovae train --help\n") and "usage:" not in err
    if "choice" in message:  # every valid choice is listed
        train = cli.choices("train")
        choices = {f"--{name}": train[name] for name in ("dataset", "activation", "objective", "model", "likelihood")}
        assert all(repr(c) in err for c in choices[option[0]])
    assert not (tmp_path / "run").exists()


def test_help_is_the_full_usage_and_every_train_option_states_its_default_once(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: pyrovae train [-h] --out OUT")
    helps = {}  # option -> its help text on one line
    for block in out.split("\n  --")[1:]:
        option, _, text = block.partition(" ")
        helps["--" + option] = " ".join(text.split())
    assert "default: None" not in out and all(text.count("default:") <= 1 for text in helps.values()), helps
    expected = {"--epochs": "50", "--seed": "0", "--model": "vae", "--latent-dim": "20", "--hidden": "400,400"}
    expected |= {"--activation": "relu", "--likelihood": "bernoulli", "--obs-scale": "0.1", "--guide": "diag"}
    expected |= {"--arch": "mlp", "--clip-norm": "none", "--batch-size": "100", "--lr": "0.001"}
    for option, default in expected.items():
        assert f"(default: {default}" in helps[option], (option, helps[option])
    flags = {"--out", "--resume", "--force", "--no-progress", "--no-binarize"}  # required, or a switch
    assert all("default:" in text for option, text in helps.items() if option not in flags), helps


def test_a_missing_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "pyrovae: error: the following arguments are required: COMMAND; see pyrovae --help\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (["0"] * 783, "line 2 has 783 values; binarized MNIST has 784"),
        (["nan", *["0"] * 783], "line 2: 'nan': NaN or infinite values are not data"),
        (["0", "inf", *["1"] * 782], "line 2: 'inf': NaN or infinite values are not data"),
        (["0.5"] * 784, "line 2: value 0.5 is not binary; binarized MNIST holds binary pixels 0 and 1"),
        (["2"] * 784, "line 2: value 2 is outside the Bernoulli likelihood's support {0, 1}"),
    ],
)
def test_bad_data_files_are_named(trained, tmp_path: Path, capsys, line: list[str], message: str):
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    good = (data / "binarized_mnist_test.amat").read_text().splitlines()
    (data / "binarized_mnist_test.amat").write_text(f"{good[0]}\n{' '.join(line)}\n")
    argv = ["train", "--dataset", "binarized-mnist", "--data-dir", str(data), "--out", str(tmp_path / "run")]
    fails([*argv, *SMALL], f"{data / 'binarized_mnist_test.amat'}: {message}", capsys)
    assert not (tmp_path / "run").exists()


def test_corrupt_gzip_is_named(trained, tmp_path: Path, capsys):
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    (data / "binarized_mnist_valid.amat").unlink()
    (data / "binarized_mnist_valid.amat.gz").write_bytes(b"\x1f\x8b not really gzip")
    argv = ["train", "--dataset", "binarized-mnist", "--data-dir", str(data), "--out", str(tmp_path / "run")]
    fails(argv, "binarized_mnist_valid.amat.gz: cannot read", capsys)


def corrupt_checkpoint(run: Path) -> None:
    (run / CHECKPOINT).write_bytes(b"half a checkpoint")


def foreign_checkpoint(run: Path) -> None:  # a readable checkpoint whose parameters have other shapes
    state = load_checkpoint(run / CHECKPOINT)
    state["trainer"]["modules"] = {
        role: {k: torch.zeros(1) for k in sd} for role, sd in state["trainer"]["modules"].items()
    }
    save_checkpoint(run / CHECKPOINT, state)


def other_settings(run: Path) -> None:
    state = load_checkpoint(run / CHECKPOINT)
    state["config"]["spec"]["latent"][0]["size"] = 7
    save_checkpoint(run / CHECKPOINT, state)


@pytest.mark.parametrize(
    ("damage", "options", "message"),
    [
        (None, ["--batch-size", "100"], "--batch-size: --resume continues with the settings in"),
        (corrupt_checkpoint, [], "checkpoint.pt: not a readable checkpoint"),
        (corrupt_checkpoint, [], "restore it from a copy, or start the run over with pyrovae train --out"),
        (None, ["--epochs", "1"], "run already has 1 epochs; pass --epochs N with N > 1 to train on"),
        (other_settings, [], "checkpoint.pt: written with other settings than"),
        (foreign_checkpoint, [], "checkpoint.pt: does not fit"),
    ],
)
def test_bad_resume_leaves_the_run_untouched(trained, tmp_path: Path, capsys, damage, options, message):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    if damage:
        damage(run)
    before = snapshot(run)
    fails(["train", "--out", str(run), "--resume", *options, "--no-progress"], message, capsys)
    assert snapshot(run) == before


def test_existing_out_with_force_must_be_a_directory(tmp_path: Path, capsys):
    (tmp_path / "run").write_text("mine")
    fails(["train", "--out", str(tmp_path / "run"), "--force"], "is a file, not a run directory", capsys)
    assert (tmp_path / "run").read_text() == "mine"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "{tmp}/missing"], "no such run directory (make one with pyrovae train --out"),
        (["evaluate", "{tmp}"], "checkpoint.pt: no checkpoint here"),
        (["evaluate", "{run}", "--device", "tpu"], "unknown device 'tpu'"),
        (["evaluate", "{run}", "--split", "validation"], "has no split 'validation'"),
        (["evaluate", "{run}", "--limit", "0"], "--limit must be a positive integer"),
        (["evaluate", "{run}", "--chunk-size", "0"], "--chunk-size must be a positive integer"),
        (["sample", "{run}", "--n", "0"], "--n must be a positive integer"),
        (["sample", "{run}", "--out", "{tmp}/grid.jpg"], "figures are PNG files"),
        (["sample", "{run}", "--out", "{tmp}/no/grid.png"], "no directory"),
        (["sample", "{run}", "--out", "{tmp}/corrupt"], "--out {tmp}/corrupt is a directory; give a file name"),
        (["plot", "{run}", "--kind", "curves", "--out", "{tmp}"], "--out {tmp} is a directory; give a file name"),
        (["sample", "{run}", "--label", "3"], "--label 3: this model has no label input"),
        (["plot", "{run}", "--kind", "samples", "--label", "3"], "--label 3: this model has no label input"),
        (["plot", "{run}", "--kind", "arithmetic", "--classes", "1,2,10"], "--classes 1,2,10: classes are 0..9"),
        (["sample", "{corrupt}"], "checkpoint.pt: not a readable checkpoint"),
    ],
)
def test_bad_evaluate_and_sample_input(trained, tmp_path: Path, capsys, argv: list[str], message: str):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained[1], corrupt)
    corrupt_checkpoint(corrupt)
    names = {"{tmp}": str(tmp_path), "{run}": str(trained[1]), "{corrupt}": str(corrupt)}
    for key, value in names.items():
        argv = [a.replace(key, value) for a in argv]
        message = message.replace(key, value)
    fails(argv, message, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt"]
