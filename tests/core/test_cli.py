import json
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyro
import pytest
from PIL import Image

from pyrovae import cli, data, families, nets
from pyrovae.inference import objectives
from pyrovae.inference.train_config import METRICS

from conftest import train


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_one_epoch_writes_every_file(amat_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--epochs", "1") == 0
    assert "final valid ELBO" in capsys.readouterr().out  # binarized-mnist has a validation split
    assert {p.name for p in out.iterdir()} == {
        ".pyrovae.lock",
        "config.json",
        "checkpoint.pt",
        "metrics.csv",
        "kl_per_dim.csv",
        "samples.png",
        "reconstructions.png",
    }
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == list(METRICS) and metrics["epoch"].tolist() == [1]
    assert png_size(out / "samples.png") == (242, 242)  # 8 x 8 digits of 28 px, 2 px padding


def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(amat_dir: Path, tmp_path: Path):
    assert train(amat_dir, tmp_path / "straight", "--epochs", "3") == 0
    assert train(amat_dir, tmp_path / "split", "--epochs", "1") == 0
    assert cli.main(["train", "--out", str(tmp_path / "split"), "--resume", "--epochs", "3", "--no-progress"]) == 0
    straight, split = (pd.read_csv(tmp_path / r / "metrics.csv").drop(columns="seconds") for r in ("straight", "split"))
    pd.testing.assert_frame_equal(straight, split)


def test_existing_out_is_refused_and_left_untouched(amat_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert train(amat_dir, out, "--epochs", "1") == 2
    assert "--resume" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_evaluate_and_sample_read_the_run(amat_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert train(amat_dir, out, "--epochs", "1") == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--split", "valid", "--k", "1,5,50", "--chunk-size", "20"]) == 0
    printed = capsys.readouterr().out
    assert "active units: z" in printed
    bounds = pd.read_csv(out / "bounds.csv")
    assert list(bounds.columns) == ["k", "bound", "stderr", "seconds", "bits_per_dim", "split", "images"]
    assert bounds["k"].tolist() == [1, 5, 50] and set(bounds["split"]) == {"valid"} and set(bounds["images"]) == {40}
    assert bounds["bound"].is_monotonic_increasing and (bounds["stderr"] > 0).all()
    pyro.set_rng_seed(123)  # whatever the global RNG, the run's seed draws the particles
    assert cli.main(["evaluate", str(out), "--split", "valid", "--k", "1,5,50", "--chunk-size", "20"]) == 0
    assert pd.read_csv(out / "bounds.csv")["bound"].tolist() == bounds["bound"].tolist()
    assert cli.main(["sample", str(out), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert png_size(tmp_path / "s.png") == (242, 62)


def test_evaluate_limit_uses_a_subset_and_iwae_trains(amat_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert (
        train(amat_dir, out, "--epochs", "1", "--objective", "iwae", "--particles", "4", "--iwae-gradient", "dreg") == 0
    )
    assert json.loads((out / "config.json").read_text())["train"]["objective_options"]["gradient"] == "dreg"
    assert cli.main(["evaluate", str(out), "--k", "1", "--limit", "10"]) == 0
    assert pd.read_csv(out / "bounds.csv")["images"].tolist() == [10]  # the datapoints evaluated, after --limit


def test_evaluate_without_checkpoint_is_a_clear_error(tmp_path: Path, capsys):
    assert cli.main(["evaluate", str(tmp_path)]) == 2
    assert "checkpoint.pt" in capsys.readouterr().err


def test_cli_choices_come_from_the_registries():
    train = cli.choices("train")
    assert train["dataset"] == data.DATASETS and train["objective"] == objectives.OBJECTIVES
    assert set(train["activation"]) == set(nets.ACTIVATIONS) and train["likelihood"] == families.names("likelihood")
    assert "delta" not in train["guide"] and {"diag", "full", "iaf"} <= set(train["guide"])


def test_a_newly_registered_family_is_a_command_line_choice(monkeypatch):
    class Zipf(families.Family):
        name, roles = "zipf", frozenset({"likelihood"})

    monkeypatch.setitem(families.FAMILIES, "zipf", Zipf)
    assert "zipf" in cli.choices("train")["likelihood"]
    help_text = cli._parser(command="train")._subparsers._group_actions[0].choices["train"].format_help()
    assert "zipf" in help_text


def test_help_lists_the_commands_and_imports_no_torch():
    code = "import sys; from pyrovae import cli; cli._parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0


def test_version_and_python_dash_m_run_the_command(capsys):
    import pyrovae

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"pyrovae {pyrovae.__version__}"
    ran = subprocess.run([sys.executable, "-m", "pyrovae", "evaluate", "no-such-run"], capture_output=True, text=True)
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "no-such-run" in ran.stderr  # one line, status 2
    assert (Path(pyrovae.__file__).parent / "py.typed").is_file()  # type hints exported (PEP 561)


def test_every_command_sets_malloc_before_it_runs(monkeypatch, tmp_path: Path, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("set") or True)
    assert cli.main(["evaluate", str(tmp_path / "missing")]) == 2  # the command itself fails at once
    assert calls == ["set"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_malloc_settings():
    assert cli.keep_freed_memory()  # mallopt returns 0 for an out-of-range value (an mmap threshold over 32 MiB)
