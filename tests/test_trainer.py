import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from seqmeta.agent import Agent
from seqmeta.cli import main
from seqmeta.configs import load_config, save_config
from seqmeta.errors import ConfigError
from seqmeta.finetune import FinetuneConfig
from seqmeta.recipes import find_recipe, list_recipes
from seqmeta.results import read_log
from seqmeta.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def tiny_config(data, out, steps, **kwargs) -> TrainConfig:
    values = dict(
        data=str(data),
        output_dir=str(out),
        max_steps=steps,
        batch_size=8,
        segment_length=10,
        context_length=6,
        hidden_size=32,
        num_layers=2,
        num_heads=1,
        dropout=0.1,
        checkpoint_every=4,
        warmup_steps=2,
        report_to="none",
    )
    return TrainConfig(**(values | kwargs))


def assert_same_weights(a_dir, b_dir):
    a, b = AutoModel.from_pretrained(a_dir), AutoModel.from_pretrained(b_dir)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(point_robot_dataset, tmp_path):
    straight = train(tiny_config(point_robot_dataset.path, tmp_path / "a", 8))
    train(tiny_config(point_robot_dataset.path, tmp_path / "b", 4))  # stops after its step-4 checkpoint
    (tmp_path / "b" / "checkpoints" / "checkpoint_7").mkdir()  # a save killed midway: no config inside
    resumed = train(tiny_config(point_robot_dataset.path, tmp_path / "b", 8), resume=True)
    assert_same_weights(straight, resumed)
    fresh = AutoModel.from_pretrained(train(tiny_config(point_robot_dataset.path, tmp_path / "c", 4)))
    assert not torch.equal(fresh.action_head.weight, AutoModel.from_pretrained(straight).action_head.weight)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["checkpoint_0", "checkpoint_1"]
    # The resolved config lies beside every checkpoint and the model, and loads back as the same config.
    checkpoints = tmp_path / "b" / "checkpoints"
    for folder, max_steps in ((resumed, 8), (checkpoints / "checkpoint_0", 4), (checkpoints / "checkpoint_1", 8)):
        assert load_config(TrainConfig, folder / "train_config.yaml").max_steps == max_steps


def test_cosine_schedule_decays_the_learning_rate_to_near_zero_and_constant_keeps_it(point_robot_dataset, tmp_path):
    rates = {}
    for schedule in ("constant", "cosine"):
        config = tiny_config(point_robot_dataset.path, tmp_path / schedule, 8, log_every=2, lr_schedule=schedule)
        train(config)
        rates[schedule] = [e["lr"] for e in read_log(tmp_path / schedule / "train_log.jsonl") if "loss" in e]
    lr = tiny_config(point_robot_dataset.path, tmp_path, 8).learning_rate
    assert rates["constant"] == pytest.approx([lr] * 4)
    cosine = rates["cosine"]  # the rate of the next step, logged after steps 2, 4, 6, 8 (warmup: 2 steps)
    assert lr > cosine[0] > cosine[1] > cosine[2] > 0 and cosine[2] < 0.2 * lr and cosine[3] == 0


@pytest.mark.reliability("faults", "right result")
def test_sigkilled_training_resumes_to_the_weights_of_an_uninterrupted_run(point_robot_dataset, tmp_path):
    def seqmeta_train(out, *flags):
        save_config(tiny_config(point_robot_dataset.path, out, 160, checkpoint_every=10), tmp_path / "recipe.yaml")
        cmd = [sys.executable, "-m", "seqmeta", "train", "--config", str(tmp_path / "recipe.yaml"), *flags]
        env = os.environ | {"OMP_NUM_THREADS": "1"}  # the same kernels in every run: bit-equal results
        return subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    proc = seqmeta_train(tmp_path / "killed")
    second = tmp_path / "killed" / "checkpoints" / "checkpoint_1" / "train_config.yaml"
    deadline = time.monotonic() + 120
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert second.exists() and not (tmp_path / "killed" / "model").exists(), "the run was not killed mid-way"
    assert seqmeta_train(tmp_path / "killed", "--resume").wait() == 0
    assert seqmeta_train(tmp_path / "straight").wait() == 0
    assert_same_weights(tmp_path / "straight" / "model", tmp_path / "killed" / "model")
    steps = [e["step"] for e in read_log(tmp_path / "killed" / "train_log.jsonl") if "loss" in e]
    assert steps == list(range(20, 161, 20))  # steps logged after the last checkpoint were dropped, then redone


def launch_two(data, out, *args, options=None):
    """tests/distributed_worker.py on 2 CPU processes (gloo); each rank's record of batches and final weights."""
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env["SEQMETA_WORKER_OPTIONS"] = json.dumps(options or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(REPO / "tests" / "distributed_worker.py"), str(data.path), str(out), *args]
    done = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((out / f"rank{r}-{''.join(args) or '6'}.json").read_text()) for r in (0, 1)]


def test_two_processes_hold_identical_weights_see_different_data_and_resume(point_robot_dataset, tmp_path):
    ranks = launch_two(point_robot_dataset, tmp_path / "a")
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert len(ranks[0]["batches"]) == 6 and not set(ranks[0]["batches"]) & set(ranks[1]["batches"])
    assert AutoModel.from_pretrained(tmp_path / "a" / "run" / "model").config.family == "point-robot"
    # 3 steps, then resumed to 6: each rank goes on with its own data stream and ends where run a did.
    launch_two(point_robot_dataset, tmp_path / "b", "3")
    resumed = launch_two(point_robot_dataset, tmp_path / "b", "6", "resume")
    for r in (0, 1):
        assert resumed[r]["batches"] == ranks[r]["batches"][3:]
        assert resumed[r]["weights"] == ranks[r]["weights"]


@pytest.mark.parametrize(
    "options",
    [{"use_prompt": False}, {"mixed_precision": "bf16"}, {"prompt_dropout": 1.0}],
    ids=["no-prompt", "bf16", "prompts-all-dropped"],
)
def test_data_parallel_training_variants_keep_the_ranks_identical(point_robot_dataset, tmp_path, options):
    """Models and settings where some parameters get no gradient in a step (no prompt; every prompt hidden)
    or the forward runs in bf16 autocast: DDP neither hangs nor lets the ranks drift apart."""
    ranks = launch_two(point_robot_dataset, tmp_path / "run", options=options)
    assert ranks[0]["weights"] == ranks[1]["weights"]
    config = AutoModel.from_pretrained(tmp_path / "run" / "run" / "model").config
    assert config.use_prompt == options.get("use_prompt", True)


@pytest.mark.reliability("bad options", "clear error, nothing written")
@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="the GPU launch configs run here")
def test_gpu_launch_configs_on_a_machine_without_the_gpus_are_refused_and_the_cpu_command_runs(
    point_robot_dataset, tmp_path
):
    """The shipped launch configs ask for 2 GPUs; without them accelerate starts 2 processes that each train
    alone (racing on one folder). seqmeta refuses that and names the CPU command, which trains with DDP."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    args = ["-m", "seqmeta", "train", "--data", str(point_robot_dataset.path), "--max-steps", "4"]
    args += ["--batch-size", "8", "--hidden-size", "16", "--num-layers", "1", "--report-to", "none"]
    for config in ("ddp", "fsdp"):
        launch = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(find_recipe(f"accelerate/{config}")),
        ]
        out = tmp_path / config
        done = subprocess.run(
            [*launch, *args, "--output-dir", str(out)], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode != 0 and not out.exists()
        assert "each trains alone" in done.stderr and "ACCELERATE_USE_CPU=1 torchrun" in done.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*torchrun, *args, "--output-dir", str(tmp_path / "cpu"), "--log-every", "2"],
        env=env | {"ACCELERATE_USE_CPU": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("model saved to") == 1  # said once, by rank 0
    logged = [e for e in read_log(tmp_path / "cpu" / "train_log.jsonl") if "loss" in e]
    assert [e["step"] for e in logged] == [2, 4] and all(e["samples_per_s"] > 0 for e in logged)


@pytest.mark.gpu
def test_fsdp_launch_config_trains_in_bf16_and_resumes_on_gpus(point_robot_dataset, tmp_path):
    """The shipped FSDP2 config (bf16) on every GPU of the machine: trains, saves a loadable model, resumes.
    accelerate runs FSDP on GPUs only; on CPUs the DDP variants above cover bf16 and the unused parameters."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    launch += [str(find_recipe("accelerate/fsdp")), "--num_processes", str(torch.cuda.device_count())]
    args = ["-m", "seqmeta", "train", "--data", str(point_robot_dataset.path), "--output-dir", str(tmp_path / "f")]
    args += ["--batch-size", "8", "--hidden-size", "32", "--num-layers", "2", "--report-to", "none"]
    args += ["--checkpoint-every", "2", "--mixed-precision", "bf16"]
    for steps, extra in (("4", []), ("6", ["--resume"])):
        done = subprocess.run(
            [*launch, *args, "--max-steps", steps, *extra], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert AutoModel.from_pretrained(tmp_path / "f" / "model").config.family == "point-robot"
    assert [e["step"] for e in read_log(tmp_path / "f" / "train_log.jsonl") if "loss" in e][-1] == 6


def test_training_logs_losses_validation_and_rollouts_on_held_out_tasks(point_robot_dataset, tmp_path):
    out = tmp_path / "t"
    train(tiny_config(point_robot_dataset.path, out, 6, log_every=2, eval_every=3, rollout_every=6, rollout_episodes=1))
    log = read_log(tmp_path / "t" / "train_log.jsonl")
    assert [e["step"] for e in log if "loss" in e] == [2, 4, 6]
    val = [e for e in log if "val_loss" in e]
    assert [e["step"] for e in val] == [3, 6] and all(np.isfinite(e["val_action_loss"]) for e in val)
    assert all(
        e["samples_per_s"] > 0 and {"action_loss", "reward_loss", "value_loss", "lr"} <= set(e)
        for e in log
        if "loss" in e
    )
    assert not (out / "logs").exists()  # report_to none: the JSONL log only
    rollouts = [e for e in log if "rollout_normalized" in e]  # acting in the held-out tasks, prompted
    assert [e["step"] for e in rollouts] == [6] and np.isfinite(rollouts[0]["rollout_mean_return"])


def test_tensorboard_is_the_default_tracker(point_robot_dataset, tmp_path):
    train(tiny_config(point_robot_dataset.path, tmp_path / "t", 2, report_to=TrainConfig.report_to))
    assert TrainConfig.report_to == "tensorboard"
    assert list((tmp_path / "t" / "logs").rglob("events.out.tfevents.*"))


@pytest.mark.reliability("bad options", "refused, files untouched")
def test_train_refuses_to_mix_runs(point_robot_dataset, tmp_path):
    train(tiny_config(point_robot_dataset.path, tmp_path / "r", 4))
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(point_robot_dataset.path, tmp_path / "r", 8))
    with pytest.raises(ConfigError, match=r"hidden_size: 32 -> 64"):
        train(tiny_config(point_robot_dataset.path, tmp_path / "r", 8, hidden_size=64), resume=True)


def test_train_verb_reads_a_recipe_and_flags_override_it(point_robot_dataset, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"data: {point_robot_dataset.path}\nmax_steps: 50\nbatch_size: 4\nhidden_size: 16\nnum_layers: 1\n"
        "use_return: false\nreport_to: none\n"
    )
    assert main(["train", "--config", str(recipe), "--max-steps", "3", "--output-dir", str(tmp_path / "t")]) == 0
    model = AutoModel.from_pretrained(tmp_path / "t" / "model")
    assert model.config.use_return is False and model.config.hidden_size == 16 and model.config.family == "point-robot"
    saved = load_config(TrainConfig, tmp_path / "t" / "model" / "train_config.yaml")
    assert saved.max_steps == 3 and saved.batch_size == 4
    prompt = {k: np.zeros((2, 5, 2)) for k in ("observation", "action")}
    prompt |= {k: np.zeros((2, 5)) for k in ("reward", "return_to_go")}
    prompt |= {"timestep": np.zeros((2, 5), int), "attention_mask": np.ones((2, 5), bool)}
    assert Agent(model, 2, prompts=prompt).act(np.zeros((2, 2))).shape == (2, 2)


@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_bad_recipes_are_refused_with_the_fix(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("data: d\nmax_step: 10\n")
    with pytest.raises(ConfigError, match=r"unknown key 'max_step'; did you mean 'max_steps'"):
        load_config(TrainConfig, recipe)
    recipe.write_text("batch_size: lots\n")
    assert main(["train", "--config", str(recipe)]) == 2
    assert "batch_size must be int, got 'lots'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    assert load_config(TrainConfig, None, {"learning_rate": 1}).learning_rate == 1.0  # an int is a fine float


@pytest.mark.parametrize("recipe", sorted(p for n, p in list_recipes().items() if "/" not in n), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(recipe):
    from seqmeta.selfsupervise import SelfSuperviseConfig

    prefixes = {"finetune": FinetuneConfig, "self_supervise": SelfSuperviseConfig}
    cls = next((c for prefix, c in prefixes.items() if recipe.name.startswith(prefix)), TrainConfig)
    config = load_config(cls, recipe)
    assert config.data and config.output_dir


def test_prompt_quality_cuts_prompts_from_that_level_only(point_robot_dataset, tmp_path):
    from seqmeta.trainer import EpisodeBatches

    ep = point_robot_dataset.episodes
    expert = np.flatnonzero(ep["quality"] == "expert")
    steps_quality = np.repeat(ep["quality"], ep["length"])
    expert_obs = {tuple(r) for r in point_robot_dataset.column("observation")[steps_quality == "expert"].round(6)}
    options = dict(segment_length=6, batch_size=64, num_prompt_segments=1, prompt_length=3, seed=0)
    batch = EpisodeBatches(point_robot_dataset, **options, prompt_episodes=expert).sample()
    assert all(tuple(r) in expert_obs for r in batch["prompt"]["observation"][:, -1].round(6))
    mixed = EpisodeBatches(point_robot_dataset, **options).sample()
    assert not all(tuple(r) in expert_obs for r in mixed["prompt"]["observation"][:, -1].round(6))
    config = tiny_config(point_robot_dataset.path, tmp_path / "q", 2)
    config.prompt_quality = "legendary"
    with pytest.raises(ConfigError, match="not a quality level"):
        train(config)


class _Payload:
    """Unpickling this object would create the marker file: the attack a checkpoint folder can carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.reliability("attacks", "refused, files untouched")
def test_resume_never_unpickles_a_file_it_did_not_write(point_robot_dataset, tmp_path):
    import pickle

    run = tmp_path / "r"
    train(tiny_config(point_robot_dataset.path, run, 4))
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    assert (checkpoint / "seqmeta_state.json").is_file() and not list(checkpoint.glob("custom_checkpoint_*"))
    marker = tmp_path / "code-ran"
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ConfigError, match="loads no pickled objects"):
        train(tiny_config(point_robot_dataset.path, run, 8), resume=True)
    assert not marker.exists()
    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    (checkpoint / "random_states_0.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))  # accelerate's own name
    with pytest.raises(ConfigError, match="tampered"):
        train(tiny_config(point_robot_dataset.path, run, 8), resume=True)
    assert not marker.exists()


def test_shipped_recipes_run_by_name(capsys):
    by_name = load_config(TrainConfig, "point_robot")
    assert by_name == load_config(TrainConfig, find_recipe("point-robot.yaml"))
    assert by_name.data == "outputs/demo/data/point-robot"
    with pytest.raises(ConfigError, match=r"no shipped recipe of that name; shipped: .*cheetah_vel_own"):
        load_config(TrainConfig, "cheetah_vell")
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "point_robot_sparse_own" in listing and "accelerate/ddp" in listing
    assert main(["recipes", "--path", "accelerate/ddp"]) == 0
    assert capsys.readouterr().out.strip().endswith("recipes/accelerate/ddp.yaml")
