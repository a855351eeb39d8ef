"""The README's Python examples run as written, in order (with one epoch instead of twenty)."""

import re
from pathlib import Path


def test_readme_python_example_runs(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", readme, flags=re.S))
    assert "range(20)" in code
    exec(compile(code.replace("range(20)", "range(1)"), "README.md", "exec"), {})
    assert "'elbo'" in capsys.readouterr().out
