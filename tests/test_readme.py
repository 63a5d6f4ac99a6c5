"""The README's "Your own task" example runs as written (a small trained model stands in for the demo's)."""

import os
import re
import shutil
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(section: str) -> str:
    text = README.read_text()
    body = text[text.index(f"## {section}\n") :]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_your_own_task_example_runs_as_written(tiny_trained_model, tmp_path, capsys):
    shutil.copytree(tiny_trained_model, tmp_path / "outputs/demo/models/point-robot-prompt-dt/model")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(readme_block("Your own task"), "README.md", "exec"), {"__name__": "readme"})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert re.search(r"2 demos: return -?\d+\.\d, success \d+%", out), out
    assert re.search(r"no prompt: return -?\d+\.\d, success \d+%", out), out
