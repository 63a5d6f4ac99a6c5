"""The wheel a user installs: built from this checkout, installed (not editable) into a fresh venv, and used from
there as a user would, with no checkout in sight: every shipped model loads by name, acts on its shipped demos and
goes through `seqmeta eval`; a shipped recipe trains a few steps; the package's data files are all there.

The venv reuses this machine's installed dependencies (torch, transformers, ...) through a path file rather than
downloading them again; seqmeta itself comes only from the wheel (checked).
"""

from __future__ import annotations

import json
import math
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

USER_SCRIPT = r"""
import json, sys
from pathlib import Path
import torch
import seqmeta

venv = Path(sys.argv[1])
assert Path(seqmeta.__file__).resolve().is_relative_to(venv.resolve()), seqmeta.__file__
shipped = seqmeta.list_pretrained()
report = {"models": {}}
for name, folder in shipped.items():
    model = seqmeta.load_model(name)
    plain = seqmeta.PromptDTModel.from_pretrained(folder)  # transformers' own loader on the shipped folder
    mine, theirs = model.state_dict(), plain.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    demos = seqmeta.load_trajectories(folder / "demos")
    family = seqmeta.get_family(model.config.family)
    task = demos.task_set.test_indices[0]
    params = demos.task_set.params[task]
    result = seqmeta.evaluate_env(model, lambda: family.make_env(params), demos=demos.task_episodes(task), episodes=2)
    results = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("eval_results.json"))
    card = (folder / "README.md").is_file()
    returns = result.returns.tolist()
    report["models"][name] = {"family": family.name, "returns": returns, "card": card, "results": results}
print(json.dumps(report))
"""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts" if sys.platform == "win32" else "bin") / "python"


def run(args, cwd, check=True, timeout=600):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv seqmeta command, the wheel, a working folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: building in the checkout would leave build/ and egg-info there
    anywhere = shutil.ignore_patterns("__pycache__", "*.egg-info")
    top_level = {".git", "build", "dist", "runs", "data", "outputs"}  # a checkout's own outputs, not the package

    def skip(folder, names):
        return set(anywhere(folder, names)) | (top_level & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, source, ignore=skip)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source], tmp)
    wheel = next((tmp / "dist").glob("seqmeta-*.whl"))
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv], tmp)
    python = _venv_python(venv)
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp).stdout.strip())
    # This machine's dependencies, as plain path entries: their .pth files (the checkout's editable install
    # among them) are not run, so `import seqmeta` can only find the wheel's copy.
    (purelib / "machine_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel], tmp)
    work = tmp / "user"
    work.mkdir()
    return python, python.parent / "seqmeta", wheel, work


def test_the_wheel_carries_recipes_weights_templates_and_shipped_models(installed):
    _, _, wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [p.relative_to(REPO).as_posix() for p in (REPO / "seqmeta").rglob("*") if p.is_file()]
    expected = [p for p in expected if "__pycache__" not in p and not Path(p).name.startswith(".")]
    missing = sorted(set(expected) - names)
    assert not missing, f"the wheel lacks {missing[:10]}: add them to [tool.setuptools.package-data]"
    assert "seqmeta/recipes/cheetah_vel_own.yaml" in names and "seqmeta/templates/model_card.md.j2" in names
    assert any(n.startswith("seqmeta-0.1.0.dist-info/licenses/LICENSE") for n in names)


def test_the_installed_package_runs_its_shipped_models_and_recipes(installed):
    python, seqmeta_cmd, _, work = installed
    version = run([seqmeta_cmd, "--version"], work).stdout
    assert version.startswith("seqmeta ")

    report = json.loads(run([python, "-c", USER_SCRIPT, python.parent.parent], work).stdout.strip().splitlines()[-1])
    assert report["models"], "no shipped model in the wheel"
    for name, model in report["models"].items():
        assert model["card"] and model["results"], f"{name} ships without its card or eval_results.json"
        assert len(model["returns"]) == 2 and all(map(math.isfinite, model["returns"]))

    name = next(iter(report["models"]))  # the command line on one of them, on its own demos
    done = run([seqmeta_cmd, "eval", "--model", name, "--output-dir", work / "eval", "--episodes", "1"], work)
    assert "the model's own demos" in done.stdout  # one episode of each task: prompt settings 0 and 1
    settings = json.loads((work / "eval" / "eval_results.json").read_text())["settings"]
    assert [s["prompt_trajectories"] for s in settings] == [0, 1]

    run([seqmeta_cmd, "collect", "--family", "point-robot", "--episodes-per-task", "2", "--output-dir", "d"], work)
    train = [seqmeta_cmd, "train", "--config", "point_robot", "--data", "d", "--output-dir", "run", "--max-steps", "3"]
    run([*train, "--rollout-every", "0", "--report-to", "none"], work)
    assert (work / "run" / "model" / "model.safetensors").is_file()
    assert "cheetah_vel_own" in run([seqmeta_cmd, "recipes"], work).stdout
    assert "train" in run([python, "-m", "seqmeta.behavior", "--help"], work).stdout
