"""A process killed (SIGKILL: no cleanup runs) in each phase of collect, train and push, and a download
cut mid-way: nothing that looks complete is left, the user's files are unchanged, and running the same
command again (``--resume`` for training) completes, training to the weights of an uninterrupted run."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from seqmeta.cli import main
from seqmeta.data.dataset import load_trajectories
from seqmeta.errors import DatasetNotFoundError
from tests.test_hub import folder_digest, seqmeta_cli

# Runs the CLI with one function replaced by an immediate os._exit (what SIGKILL leaves: no finally
# blocks, no atexit); "module:attr@n" lets the first n - 1 calls through.
KILL_IN = """
import importlib, os, sys
target, _, nth = sys.argv[1].partition("@")
module, _, attr = target.partition(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), [0]
def killed(*args, **kwargs):
    calls[0] += 1
    if calls[0] >= int(nth or 1):
        os._exit(137)
    return original(*args, **kwargs)
setattr(owner, name, killed)
from seqmeta.cli import main
sys.exit(main(sys.argv[2:]))
"""


def killed_in(target: str, argv: list[str], env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN, target, *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 137, f"the run was not killed in {target}: {proc.returncode}\n{proc.stderr[-2000:]}"
    return proc


COLLECT_PHASES = [
    "seqmeta.data.collect:run_episodes",  # while rolling out
    "datasets:Dataset.save_to_disk",  # while writing the steps
    "seqmeta.data.dataset:atomic_write_json",  # while writing seqmeta.json
    "seqmeta.data.dataset:render_dataset_card",  # with everything but the card written
]


@pytest.mark.reliability("faults", "refused, files untouched")
@pytest.mark.parametrize("phase", COLLECT_PHASES)
def test_collect_killed_in_any_phase_leaves_nothing_complete_and_reruns(tmp_path, phase):
    out = tmp_path / "data"
    argv = ["collect", "--family", "point-robot", "--episodes-per-task", "2", "--out", str(out)]
    killed_in(phase, argv)
    assert not out.exists()
    with pytest.raises(DatasetNotFoundError):
        load_trajectories(out)
    assert main(argv) == 0  # the same command again: the hidden partial folder is no obstacle
    assert load_trajectories(out).meta.num_episodes == 100


TRAIN_FLAGS = [
    "--max-steps", "6", "--checkpoint-every", "2", "--batch-size", "8", "--segment-length", "8",
    "--context-length", "4", "--hidden-size", "32", "--num-layers", "1", "--eval-every", "0", "--report-to", "none",
]  # fmt: skip
TRAIN_PHASES = [
    "accelerate:Accelerator.save_state@2",  # while writing the second checkpoint
    "seqmeta.trainer:save_model",  # after the last step, before the model folder
    "transformers:PreTrainedModel.save_pretrained",  # while writing the model folder
]


@pytest.fixture(scope="module")
def uninterrupted(point_robot_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    fresh_process(["train", "--data", str(point_robot_dataset.path), "--output-dir", str(out), *TRAIN_FLAGS])
    return load_file(out / "model" / "model.safetensors")


def fresh_process(argv: list[str]) -> None:
    """The CLI in its own process, as the killed run had (the test process's torch state can differ)."""
    proc = subprocess.run([sys.executable, "-m", "seqmeta", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.reliability("faults", "right result")
@pytest.mark.parametrize("phase", TRAIN_PHASES)
def test_train_killed_in_any_phase_resumes_to_the_uninterrupted_weights(
    point_robot_dataset, tmp_path, phase, uninterrupted
):
    out = tmp_path / "run"
    argv = ["train", "--data", str(point_robot_dataset.path), "--output-dir", str(out), *TRAIN_FLAGS]
    killed_in(phase, argv)
    assert not (out / "model").exists()
    fresh_process([*argv, "--resume"])
    resumed = load_file(out / "model" / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


@pytest.mark.reliability("faults", "refused, files untouched")
@pytest.mark.parametrize("phase", ["huggingface_hub:HfApi.create_commit", "seqmeta.hub:_stage_model"])
def test_push_killed_keeps_the_folder_and_a_second_push_completes(tiny_trained_model, hub_server, hub_env, phase):
    before = folder_digest(tiny_trained_model)
    repo = "tester/killed"
    killed_in(phase, ["push", "--model", str(tiny_trained_model), "--repo-id", repo], env=hub_env)
    assert folder_digest(tiny_trained_model) == before
    assert "model.safetensors" not in _files_or_none(hub_server, repo)
    seqmeta_cli("push", "--model", str(tiny_trained_model), "--repo-id", repo, env=hub_env)
    assert hub_server.files(repo)["model.safetensors"] == (tiny_trained_model / "model.safetensors").read_bytes()


def _files_or_none(hub_server, repo) -> dict:
    from tests.hub_server import HubError

    try:
        return hub_server.files(repo)
    except HubError:  # the repository was never created
        return {}
