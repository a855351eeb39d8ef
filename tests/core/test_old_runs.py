"""A run written by pyrovae before module state dicts and the resolved spec (checkpoint format 2,
``tests/data/run_format2``: ``pyrovae train --hidden 8 --latent-dim 2 --epochs 1 --objective iwae
--particles 2`` at commit e15ebc7) evaluates, samples, plots and resumes, and is rewritten in this layout."""

import json
import shutil
from pathlib import Path

import pandas as pd
import torch

from pyrovae import cli, spec, store
from pyrovae.checkpoint import CHECKPOINT, FORMAT, load_checkpoint

OLD_RUN = Path(__file__).parents[1] / "data" / "run_format2"


def test_a_format_2_run_still_works_and_is_rewritten_in_this_layout(tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    old = load_checkpoint(run / CHECKPOINT)
    assert old["format"] == 2 and "latent_dim" in old["config"] and "particles" in old["config"]["train"]
    loaded = store.load_run(run, "cpu")  # parameters under their param-store names, mapped into the networks
    torch.testing.assert_close(
        loaded.networks["encoder_z"].encoder.net[0].weight, old["trainer"]["params"]["encoder_z$$$encoder.net.0.weight"]
    )
    assert loaded.spec == spec.with_options(spec.load("vae"), hidden=(8,), latent_dim=(2,))
    assert cli.main(["evaluate", str(run), "--k", "1,5", "--limit", "20"]) == 0
    assert pd.read_csv(run / "bounds.csv")["bound"].notna().all()
    assert cli.main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["plot", str(run), "--kind", "latent-map", "--out", str(tmp_path / "m.png")]) == 0
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    new = load_checkpoint(run / CHECKPOINT)
    assert new["format"] == FORMAT and set(new["trainer"]["modules"]) == {"model", "guide"}
    config = json.loads((run / "config.json").read_text())
    assert (
        config["train"]["objective_options"] == {"num_particles": 2, "gradient": "standard"}
        and "latent_dim" not in config
    )
    assert len(new["trainer"]["history"]) == 2 and new["trainer"]["history"][0] == old["trainer"]["history"][0]
