"""What the benchmark scripts share: the report's header, running commands, writing the report.

Every results file opens with :func:`header` (machine, date, command, budget); the
scripts run the real ``pyrovae`` commands through :func:`run` and write their report
with :func:`write_report`. The reports go to :data:`RESULTS`, ``benchmarks/results``
unless the environment variable ``PYROVAE_BENCHMARK_RESULTS`` names another folder
(for a trial run that must not overwrite the committed results).
"""

from __future__ import annotations

import collections
import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyro
import torch

RESULTS = Path(os.environ.get("PYROVAE_BENCHMARK_RESULTS") or Path(__file__).parent / "results")
TAIL = 20  # lines of a failed command's stderr that CommandError quotes


class CommandError(RuntimeError):
    """A command exited with a nonzero status; the message quotes the command and its stderr's last lines."""

    def __init__(self, command: list[str], returncode: int, stderr: str) -> None:
        self.command, self.returncode, self.stderr = command, returncode, stderr
        tail = "\n".join(stderr.splitlines()[-TAIL:]) or "(nothing)"
        super().__init__(f"`{shlex.join(command)}` exited with status {returncode}; its stderr ends with:\n{tail}")


def machine(device: str = "auto") -> str:
    """The machine in one line: platform, CPUs, torch threads, versions and the device computed on.

    :param device: ``cpu``, ``cuda`` or ``auto`` (``cuda`` when there is one), as ``pyrovae``'s ``--device``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    where = f"`{device}` ({torch.cuda.get_device_name()})" if device.startswith("cuda") else f"`{device}`"
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; "
        f"Python {platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}; device {where}"
    )


def header(
    title: str,
    *,
    budget: str,
    notes: Iterable[str] = (),
    command: list[str] | None = None,
    device: str = "auto",
) -> str:
    """The top of a report: its title, then machine, UTC date, command, budget and ``notes`` as a list.

    :param budget: what the benchmark spent (epochs, data, architecture); may run over several lines,
        each continuation indented by two spaces.
    :param notes: further list items, after the budget.
    :param command: the command that produced the report; by default this script's, from ``sys.argv``,
        as ``python benchmarks/NAME.py ARGS``.
    :param device: the device the benchmark computed on, as for :func:`machine`.
    """
    if command is None:
        command = ["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    items = [f"machine: {machine(device)}", f"date: {date}", f"command: `{shlex.join(command)}`", f"budget: {budget}"]
    return "\n".join([f"# {title}", "", *(f"- {item}" for item in [*items, *notes])])


def run(command: list[str], *, capture: bool = False, echo: bool = True) -> str:
    """Run ``command`` to its end; raise :class:`CommandError` if its exit status is nonzero.

    :param capture: keep its stdout and stderr and return the stdout; otherwise its stdout goes
        straight to ours, its stderr is passed on line by line (its last lines kept for the error),
        and the return value is ``""``.
    :param echo: print ``$ COMMAND`` first.
    """
    if echo:
        print("$", shlex.join(command), flush=True)
    if capture:
        done = subprocess.run(command, capture_output=True, text=True)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    else:
        tail: collections.deque[str] = collections.deque(maxlen=TAIL)
        with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
            for line in process.stderr:
                sys.stderr.write(line)
                tail.append(line)
        returncode, stdout, stderr = process.returncode, "", "".join(tail)
    if returncode:
        raise CommandError(command, returncode, stderr)
    return stdout


def write_report(name: str, *sections: str | pd.DataFrame) -> Path:
    """Write the sections, a blank line apart, to ``RESULTS / name``; print the report and return its path.

    :param sections: Markdown text, or a table (written as a Markdown table, without its index).
    """
    text = "\n\n".join(s.to_markdown(index=False) if isinstance(s, pd.DataFrame) else s.strip("\n") for s in sections)
    path = RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text, flush=True)
    return path
