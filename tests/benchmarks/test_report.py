"""The benchmarks' shared helper: the report header, running commands, writing the report."""

from __future__ import annotations

import datetime
import platform
import shlex
import sys
from pathlib import Path

import pandas as pd
import pyro
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import report

FAILING = [sys.executable, "-c", "import sys; print('some output'); sys.exit('boom')"]


def test_header_names_machine_date_command_and_budget():
    command = ["python", "benchmarks/speed.py", "--data-dir", "a dir"]
    text = report.header("Title", budget="3 epochs", notes=["a note"], command=command, device="cpu")
    lines = text.splitlines()
    assert lines[:2] == ["# Title", ""]
    assert lines[2].startswith("- machine: ") and platform.machine() in lines[2]
    assert f"torch {torch.__version__}" in lines[2] and f"pyro {pyro.__version__}" in lines[2]
    assert "device `cpu`" in lines[2]
    assert lines[3].startswith("- date: " + datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
    assert lines[3].endswith(" UTC")
    assert lines[4:] == ["- command: `python benchmarks/speed.py --data-dir 'a dir'`", "- budget: 3 epochs", "- a note"]


def test_header_command_is_the_script_s_own_by_default(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/benchmarks/bounds.py", "--epochs", "2"])
    assert "- command: `python benchmarks/bounds.py --epochs 2`" in report.header("Title", budget="2 epochs")


@pytest.mark.parametrize("capture", [False, True])
def test_run_raises_with_the_command_and_its_stderr(capture, capsys):
    with pytest.raises(report.CommandError, match="boom") as error:
        report.run(FAILING, capture=capture)
    assert error.value.returncode == 1
    assert str(error.value) == f"`{shlex.join(FAILING)}` exited with status 1; its stderr ends with:\nboom"
    assert capsys.readouterr().out.startswith(f"$ {shlex.join(FAILING)}\n")


def test_run_returns_the_captured_stdout_and_passes_stderr_on(capsys):
    say = [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    assert report.run(say, capture=True, echo=False) == "out\n"
    assert capsys.readouterr().out == ""
    assert report.run(say, echo=False) == ""
    assert capsys.readouterr().err == "err\n"


def test_write_report_joins_text_and_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    table = pd.DataFrame({"a": [1], "b": ["two"]})
    path = report.write_report("x.md", "# Title\n", table, "end")
    assert path == tmp_path / "results" / "x.md"
    assert path.read_text() == f"# Title\n\n{table.to_markdown(index=False)}\n\nend\n"
    assert capsys.readouterr().out == path.read_text()
