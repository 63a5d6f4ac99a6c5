"""Publishing and loading through the real huggingface_hub / transformers / datasets clients.

The clients read ``HF_ENDPOINT`` when they are imported, so each user-side step runs in a subprocess
whose environment points them at the loopback server (``hub_env``), as a user's shell would.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

import seqmeta
from seqmeta.data.dataset import load_trajectories
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.hub import CardError, push_model, render_model_card
from seqmeta.models import PromptDTModel


@pytest.fixture(scope="module")
def model_dir(tiny_trained_model, point_robot_dataset, tmp_path_factory):
    """A trained model folder with its eval_results.json and plots, as `seqmeta train` + `eval` leave it."""
    folder = tmp_path_factory.mktemp("run") / "model"
    shutil.copytree(tiny_trained_model, folder)
    protocol = EvalProtocol(data=str(point_robot_dataset.path), prompt_trajectories="0,1", episodes=2)
    evaluate(PromptDTModel.from_pretrained(folder), protocol, output_dir=folder, progress=False)
    return folder


def run(args, env, check=True):
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def seqmeta_cli(*args, env, check=True):
    return run([sys.executable, "-m", "seqmeta", *args], env, check)


def python(code: str, env, *args, check=True):
    return run([sys.executable, "-c", code, *args], env, check)


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


LOAD_AND_COMPARE = """
import json, sys, torch
import seqmeta
from huggingface_hub import ModelCard, hf_hub_download
repo, revision, local = sys.argv[1:4]
hub = seqmeta.PromptDTModel.from_pretrained(repo, revision=revision)
mine = seqmeta.PromptDTModel.from_pretrained(local)
a, b = hub.state_dict(), mine.state_dict()
card = ModelCard.load(hf_hub_download(repo, "README.md", revision=revision))
print(json.dumps({
    "identical": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
    "family": hub.config.family,
    "library": card.data.library_name,
    "pipeline": card.data.pipeline_tag,
    "results": [(r.metric_type, r.metric_name, r.metric_value) for r in card.data.eval_results],
}))
"""


def load_and_compare(repo: str, revision: str, local: Path, env) -> dict:
    return last_json(python(LOAD_AND_COMPARE, env, repo, revision, str(local)))


def test_model_round_trip_weights_card_and_offline_cache(model_dir, hub_server, hub_env):
    repo = "tester/point-robot-prompt-dt"
    before = folder_digest(model_dir)
    seqmeta_cli("push", "--model", str(model_dir), "--repo-id", repo, "--revision", "v1", env=hub_env)
    assert folder_digest(model_dir) == before  # the local folder is only read
    listed = hub_server.files(repo, revision="v1")
    for name in ("README.md", "config.json", "model.safetensors", "train_config.yaml", "eval_results.json"):
        assert name in listed
    assert {"adaptation_curve.png", "per_task.png"} <= set(listed)
    assert listed["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()

    loaded = load_and_compare(repo, "v1", model_dir, hub_env)
    assert loaded["identical"] and loaded["family"] == "point-robot"
    assert loaded["library"] == "seqmeta" and loaded["pipeline"] == "reinforcement-learning"
    results = json.loads((model_dir / "eval_results.json").read_text())
    published = {(t, n): v for t, n, v in loaded["results"]}
    for s in results["settings"]:
        n = s["prompt_trajectories"]
        label = f"expert prompts, prompt trajectories {n}" if n else "no prompt"
        assert published[("mean_reward", f"mean return, {label}")] == round(s["mean_return"], 3)
        assert published[("normalized_score", f"normalized score, {label}")] == round(s["normalized"], 2)

    # Pulled back, the folder holds the published files byte for byte; pushed again from there (or from
    # the model loaded by its Hub id), the results and plots come along.
    pulled = model_dir.parent / "pulled"
    seqmeta_cli("pull", "--model", repo, "--revision", "v1", "--output-dir", str(pulled), env=hub_env)
    published_files = {k: hashlib.sha256(v).hexdigest() for k, v in listed.items() if k != ".gitattributes"}
    assert published_files == {k: v for k, v in folder_digest(pulled).items() if not k.startswith(".")}
    seqmeta_cli("push", "--model", str(pulled), "--repo-id", "tester/again", env=hub_env)
    assert set(hub_server.files("tester/again")) == set(listed)
    python(
        "import seqmeta, sys; seqmeta.push_model(seqmeta.load_model(sys.argv[1], revision='v1'), 'tester/third')",
        hub_env,
        repo,
    )
    assert {"eval_results.json", "per_task.png", "train_config.yaml"} <= set(hub_server.files("tester/third"))

    hub_server.stop()  # nothing to reach: the cache must serve it
    assert load_and_compare(repo, "v1", model_dir, dict(hub_env, HF_HUB_OFFLINE="1"))["identical"]


@pytest.mark.reliability("faults", "right result")
def test_interrupted_push_keeps_the_folder_and_a_second_push_completes(model_dir, hub_server, hub_env):
    repo = "tester/flaky"
    before = folder_digest(model_dir)
    hub_server.fail_next("commit", times=1)
    failed = seqmeta_cli("push", "--model", str(model_dir), "--repo-id", repo, env=hub_env, check=False)
    assert failed.returncode == 2
    assert "failed" in failed.stderr and "unchanged" in failed.stderr and "again" in failed.stderr
    assert folder_digest(model_dir) == before
    assert "model.safetensors" not in hub_server.files(repo)  # nothing half-committed
    pushed = seqmeta_cli("push", "--model", str(model_dir), "--repo-id", repo, env=hub_env)
    files, head = hub_server.files(repo), hub_server.head(repo)
    assert files["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    again = seqmeta_cli("push", "--model", str(model_dir), "--repo-id", repo, env=hub_env)
    assert hub_server.files(repo) == files  # idempotent: the same files, no new commit
    assert hub_server.head(repo) == head and again.stdout == pushed.stdout


@pytest.mark.reliability("bad models", "refused, files untouched")
def test_card_with_invalid_metadata_is_refused_before_upload(model_dir, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    results = json.loads((broken / "eval_results.json").read_text())
    results["settings"][0]["mean_return"] = float("nan")
    (broken / "eval_results.json").write_text(json.dumps(results))

    def no_network(*args, **kwargs):
        raise AssertionError("nothing may be uploaded for an invalid card")

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", no_network)
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", no_network)
    with pytest.raises(CardError, match="not a finite number"):
        push_model(broken, "tester/broken")
    (broken / "per_task.png").unlink()  # a plot the card would show but not ship
    results["settings"][0]["mean_return"] = 1.0
    (broken / "eval_results.json").write_text(json.dumps(results))
    card = render_model_card(broken, "tester/ok")
    assert "per_task.png" not in str(card)  # plots are what the folder has, never invented


def test_card_numbers_come_from_eval_results(model_dir):
    card = str(render_model_card(model_dir, "tester/x"))
    results = json.loads((model_dir / "eval_results.json").read_text())
    for s in results["settings"]:
        assert f"| {s['prompt_trajectories']} | {s['mean_return']:.2f} | {s['normalized']:.1f} |" in card
    assert "library_name: seqmeta" in card and "pipeline_tag: reinforcement-learning" in card
    assert "seqmeta train --config train_config.yaml" in card


def test_dataset_round_trip_by_quality_config(point_robot_dataset, hub_server, hub_env, tmp_path):
    repo = "tester/point-robot-data"
    seqmeta_cli("push", "--dataset", str(point_robot_dataset.path), "--repo-id", repo, env=hub_env)
    counts = python(
        "import datasets, json\n"
        f"print(json.dumps({{q: len(datasets.load_dataset({repo!r}, q, split='train')) "
        "for q in ('expert', 'random')}))",
        hub_env,
    )
    per_quality = last_json(counts)
    steps_quality = np.repeat(point_robot_dataset.episodes["quality"], point_robot_dataset.episodes["length"])
    assert per_quality == {q: int((steps_quality == q).sum()) for q in ("expert", "random")}

    seqmeta_cli("pull", "--dataset", repo, "--out", str(tmp_path / "back"), env=hub_env)
    back = load_trajectories(tmp_path / "back")
    for column in ("episode_index", "task_index", "timestep", "observation", "action", "reward", "return_to_go"):
        np.testing.assert_array_equal(back.column(column), point_robot_dataset.column(column))
    assert list(back.episodes["quality"]) == list(point_robot_dataset.episodes["quality"])
    assert back.meta.stats == point_robot_dataset.meta.stats
    assert "configs:" in (tmp_path / "back" / "README.md").read_text()

    seqmeta_cli("pull", "--dataset", repo, "--out", str(tmp_path / "expert"), "--quality", "expert", env=hub_env)
    expert = load_trajectories(tmp_path / "expert")
    assert set(expert.episodes["quality"]) == {"expert"} and list(expert.meta.qualities) == ["expert"]
    assert expert.meta.num_episodes == int((point_robot_dataset.episodes["quality"] == "expert").sum())

    args = ["pull", "--dataset", repo, "--out", str(tmp_path / "x"), "--quality", "legendary"]
    bad = seqmeta_cli(*args, env=hub_env, check=False)
    assert bad.returncode == 2 and "legendary" in bad.stderr and "expert" in bad.stderr
    assert not (tmp_path / "x").exists()
    bad = seqmeta_cli("pull", "--model", repo, "--output-dir", str(tmp_path / "m"), env=hub_env, check=False)
    assert bad.returncode == 2 and f"downloading {repo} failed" in bad.stderr  # a dataset repo is no model repo
    assert not (tmp_path / "m").exists()


@pytest.mark.reliability("faults", "right result")
def test_download_cut_mid_way_resumes_or_fails_cleanly(point_robot_dataset, hub_server, hub_env, tmp_path):
    repo = "tester/cut"
    seqmeta_cli("push", "--dataset", str(point_robot_dataset.path), "--repo-id", repo, env=hub_env)
    # One download cut in half: the client picks it up again and the pulled data is whole (checksums checked).
    hub_server.fail_next("resolve", times=1, error="truncate")
    seqmeta_cli("pull", "--dataset", repo, "--out", str(tmp_path / "once"), env=hub_env)
    assert any(r[3] == "truncated" for r in hub_server.requests)
    np.testing.assert_array_equal(
        load_trajectories(tmp_path / "once").column("observation"), point_robot_dataset.column("observation")
    )
    # Every download cut: one line, exit 2, and the folder it was to replace (--overwrite) stays whole.
    kept, before = folder_digest(tmp_path / "once"), sorted(p.name for p in tmp_path.iterdir())
    hub_server.fail_next("resolve", times=100, error="truncate")
    env = dict(hub_env, HF_HOME=str(tmp_path / "empty-cache"))  # nothing cached to fall back on
    cut = seqmeta_cli("pull", "--dataset", repo, "--out", str(tmp_path / "once"), "--overwrite", env=env, check=False)
    hub_server._faults.clear()
    assert cut.returncode == 2 and len(cut.stderr.strip().splitlines()) == 1, cut.stderr
    assert "downloading tester/cut failed" in cut.stderr and "run the same command again" in cut.stderr
    assert folder_digest(tmp_path / "once") == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "empty-cache"])  # no half folder left
    seqmeta_cli("pull", "--dataset", repo, "--out", str(tmp_path / "again"), env=env)  # the line is back
    assert folder_digest(tmp_path / "again") == kept


@pytest.mark.hub
def test_real_hub_round_trip(model_dir, tmp_path):
    """Against huggingface.co: a private repository, pushed, loaded, deleted. Needs HF_TOKEN and network.

    Deselected by default; asked for (``pytest -m hub``) it fails, never skips, when it cannot run."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        pytest.fail("pytest -m hub talks to huggingface.co: set HF_TOKEN to a token with write access")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        user = api.whoami()["name"]
    except Exception as e:  # no network, or a bad token
        pytest.fail(f"huggingface.co did not accept HF_TOKEN or is not reachable: {e}")
    repo = f"{user}/seqmeta-test-{uuid.uuid4().hex[:8]}"
    try:
        push_model(model_dir, repo, private=True, token=token)
        hub = PromptDTModel.from_pretrained(repo, token=token)
        mine = PromptDTModel.from_pretrained(model_dir)
        assert all((hub.state_dict()[k] == v).all() for k, v in mine.state_dict().items())
    finally:
        api.delete_repo(repo, missing_ok=True)


def test_push_model_object_publishes_the_in_memory_weights_with_the_folder_run_files(model_dir, tmp_path, monkeypatch):
    import torch

    staged = tmp_path / "staged"

    def capture(stage, repo_id, repo_type, *args, **kwargs):
        shutil.copytree(stage, staged)
        return f"loopback/{repo_id}"

    monkeypatch.setattr("seqmeta.hub._upload", capture)
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "own").mkdir()  # a second evaluation, in a subfolder, with its plot
    shutil.copy2(model_dir / "eval_results.json", folder / "own" / "eval_results.json")
    shutil.copy2(model_dir / "per_task.png", folder / "own" / "per_task.png")
    (folder / "own" / "video_task45_prompt0_0.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a rollout video
    model = PromptDTModel.from_pretrained(folder)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # differs from the folder's weights now
    from seqmeta.hub import push_model

    assert push_model(model, "tester/changed") == "loopback/tester/changed"
    pushed = PromptDTModel.from_pretrained(staged)
    for name, value in model.state_dict().items():
        assert torch.equal(pushed.state_dict()[name], value), name
    assert {"eval_results.json", "train_config.yaml", "README.md", "adaptation_curve.png"} <= {
        p.name for p in staged.iterdir()
    }
    card = (staged / "README.md").read_text()
    assert "tester/changed" in card
    assert (staged / "own" / "eval_results.json").is_file() and (staged / "own" / "per_task.png").is_file()
    assert (staged / "own" / "video_task45_prompt0_0.mp4").is_file()
    assert "from `own/eval_results.json`" in card and "(own/per_task.png)" in card


@pytest.mark.reliability("attacks", "refused, files untouched")
def test_push_refuses_symbolic_links(model_dir, tmp_path, monkeypatch):
    from seqmeta.hub import HubError

    uploads = []
    monkeypatch.setattr("seqmeta.hub._upload", lambda *a, **k: uploads.append(a))
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    secret = tmp_path / "private.yaml"
    secret.write_text("token: hf_secret\n")
    (folder / "train_config.yaml").unlink()
    (folder / "train_config.yaml").symlink_to(secret)
    with pytest.raises(HubError, match="symbolic link"):
        push_model(folder, "tester/linked")
    (folder / "train_config.yaml").unlink()
    shutil.copy2(model_dir / "train_config.yaml", folder / "train_config.yaml")
    (folder / "extra.png").symlink_to(secret)  # a link under a published name
    with pytest.raises(HubError, match="symbolic link"):
        push_model(folder, "tester/linked")
    assert uploads == []


def test_the_cards_python_snippet_runs(model_dir):
    import re

    card = str(render_model_card(model_dir, str(model_dir), None))  # the repository id is the local folder here
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["result"].returns.shape == (10,)


def test_the_card_says_what_the_model_saw_of_its_evaluation_tasks(model_dir, tmp_path):
    card = str(render_model_card(model_dir, "tester/x"))
    assert "trained on tasks 0-44; evaluated on tasks\n  45-49 (never seen in training)" in card
    task_set = seqmeta.get_family("point-robot").task_set()
    goal = task_set.params[45]["goal"]
    assert f"| 45 | goal=({goal[0]:.3g}, {goal[1]:.3g}) |" in card  # tasks by their parameters, not only indices
    assert "Training data: the 720 episodes of its training tasks in a dataset of 800" in card
    # A fine-tuned model has seen episodes of the tasks it is evaluated on: the card says which.
    tuned = tmp_path / "tuned"
    shutil.copytree(model_dir, tuned)
    (tuned / "finetune_data.json").write_text(json.dumps({"data": "d", "episodes": {"46": [1, 2], "45": [0]}}))
    card = str(render_model_card(tuned, "tester/x"))
    assert "never seen" not in card and "fine-tuned on episodes of tasks 45, 46" in card
    # A task set that trains and tests on the same tasks (PEARL's Cheetah-Dir) is not called held out.
    config = json.loads((model_dir / "config.json").read_text())
    dir_model = tmp_path / "dir"
    shutil.copytree(model_dir, dir_model)
    (dir_model / "config.json").write_text(json.dumps(config | {"family": "cheetah-dir", "task_set": "default"}))
    for results in dir_model.rglob("eval_results.json"):
        results.unlink()
    card = str(render_model_card(dir_model, "tester/x"))
    assert "never seen" not in card and "tasks 0, 1 are also training tasks" in card


def test_a_shipped_model_published_and_pulled_back_is_the_same_folder(hub_server, hub_env, tmp_path):
    from seqmeta.pretrained import list_pretrained

    name, folder = sorted(list_pretrained().items())[0]
    repo = f"tester/{name}"
    seqmeta_cli("push", "--model", name, "--repo-id", repo, env=hub_env)
    seqmeta_cli("pull", "--model", repo, "--output-dir", str(tmp_path / "back"), env=hub_env)
    shipped = folder_digest(folder)
    back = {k: v for k, v in folder_digest(tmp_path / "back").items() if not k.startswith(".")}
    assert shipped.keys() == back.keys()  # demos/, evaluations and plots included
    assert {k: v for k, v in shipped.items() if k != "README.md"} == {k: v for k, v in back.items() if k != "README.md"}
    # The card is the shipped one rendered for the repository id it names.
    assert (tmp_path / "back" / "README.md").read_text() == str(render_model_card(folder, repo))
