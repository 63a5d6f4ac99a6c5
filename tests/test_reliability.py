"""Bad input gets one clear line and exit 2 before any work; bad data never trains silently."""

import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pytest

import seqmeta
from seqmeta.cli import main
from seqmeta.configs import check_options
from seqmeta.data.dataset import load_trajectories
from seqmeta.errors import ConfigError, DatasetFormatError
from seqmeta.trainer import TrainConfig, train

from .test_trainer import tiny_config

BAD_TRAIN_OPTIONS = [
    (["--grad-clip", "-1"], "grad_clip must be > 0"),
    (["--max-steps", "0"], "max_steps must be >= 1"),
    (["--checkpoint-every", "0"], "checkpoint_every must be >= 1"),
    (["--return-dropout", "2"], "return_dropout must be <= 1"),
    (["--prompt-dropout", "-0.5"], "prompt_dropout must be >= 0"),
    (["--context-length", "0"], "context_length must be >= 1"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--learning-rate", "-1"], "learning_rate must be > 0"),
    (["--learning-rate", "nan"], "learning_rate must be a finite number"),
    (["--dropout", "1.5"], "dropout must be <= 0.99"),
    (["--hidden-size", "30", "--num-heads", "4"], "not divisible by num_heads"),
    (["--mixed-precision", "fp8"], "mixed_precision must be one of"),
    (["--mixed-precision", "fp16"], "fp16 needs a CUDA GPU"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_TRAIN_OPTIONS)
@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_bad_training_options_are_refused_before_any_work(point_robot_dataset, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    code = main(["train", "--data", str(point_robot_dataset.path), "--output-dir", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (out / "model").exists()


@pytest.mark.parametrize(
    ("verb", "flags", "message"),
    [
        ("finetune", ["--method", "magic"], "method must be one of"),
        ("finetune", ["--awr-beta", "0"], "awr_beta must be > 0"),
        ("finetune", ["--trajectories", "0"], "trajectories must be >= 1"),
        ("self-supervise", ["--labels", "oracle"], "labels must be one of"),
        ("self-supervise", ["--online-prompt-fraction", "1.5"], "online_prompt_fraction must be <= 1"),
        ("eval", ["--episodes", "0"], "episodes must be >= 1"),
        ("eval", ["--seed", "-1"], "seed must be >= 0"),
        ("eval", ["--target-return", "1e300"], "is over 10x the largest |return| the model was trained on"),
        ("eval", ["--video", "-1"], "--video must be 0 or more episodes"),
        ("eval", ["--training-log", "no/train_log.jsonl"], "no training log at no/train_log.jsonl"),
        ("eval", ["--baseline", "other=no/eval_results.json"], "no eval_results.json at no/eval_results.json"),
    ],
)
@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_bad_options_of_other_verbs(tiny_trained_model, point_robot_dataset, tmp_path, capsys, verb, flags, message):
    argv = [verb, "--model", str(tiny_trained_model), "--data", str(point_robot_dataset.path)]
    code = main([*argv, "--output-dir", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--family", "point-robot", "--episodes-per-task", "0"], "--episodes-per-task must be at least 1, got 0"),
        (["--family", "point-robot", "--episodes-per-task", "-3"], "--episodes-per-task must be at least 1"),
        (["--family", "point-robot", "--seed", "-1"], "--seed must be 0 or more"),
        (["--family", "point-robot", "--quality", "search"], "point-robot has no search plan"),
        (["--family", "point-robot-sparse", "--quality", "search-corrections"], "name the model with --acting-model"),
        (
            ["--family", "point-robot", "--quality", "expert", "--acting-model", "m"],
            "--acting-model is for a corrections",
        ),
        (
            ["--family", "point-robot-sparse", "--quality", "search-corrections", "--acting-model", "/no/model"],
            "no model",
        ),
    ],
)
@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_bad_collect_options(tmp_path, capsys, flags, message):
    assert main(["collect", *flags, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "d").exists()


@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_check_options_on_a_config_built_in_python():
    with pytest.raises(ConfigError, match="return_dropout must be <= 1"):
        check_options(TrainConfig(return_dropout=1.5))
    check_options(TrainConfig())  # the defaults are in range


def damaged_copy(dataset, tmp_path, column, row, value, keep_checksums=False):
    """A copy of the dataset whose Arrow file has ``value`` written into ``column`` at ``row``; its
    seqmeta.json without checksums (as written before they were recorded) unless ``keep_checksums``."""
    copy = tmp_path / "damaged"
    shutil.copytree(dataset.path, copy)
    table = dataset.hf.data.table
    values = table.column(column).to_numpy(zero_copy_only=False)
    values = np.stack(values) if values.dtype == object else values.copy()
    values[row] = value
    array = pa.FixedSizeListArray.from_arrays(values.ravel(), values.shape[1]) if values.ndim == 2 else pa.array(values)
    table = table.set_column(table.schema.get_field_index(column), column, array.cast(table.schema.field(column).type))
    arrow = next(copy.glob("data-*.arrow"))
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    if not keep_checksums:
        meta = json.loads((copy / "seqmeta.json").read_text())
        meta.pop("checksums")
        (copy / "seqmeta.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize("column", ["observation", "reward", "action", "task_index", "timestep"])
@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_a_data_file_changed_since_it_was_written_is_refused(point_robot_dataset, tmp_path, column):
    """Even a plausible value (bit rot, an edit) in any column: the sha256 recorded at write differs."""
    plausible = {"observation": 0.5, "reward": -0.25, "action": 0.05, "task_index": 3, "timestep": 7}[column]
    copy = damaged_copy(point_robot_dataset, tmp_path, column, 123, plausible, keep_checksums=True)
    with pytest.raises(DatasetFormatError, match=r"data-00000-of-00001\.arrow changed since it was written"):
        load_trajectories(copy)


@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_a_dataset_copied_in_part_is_refused(point_robot_dataset, tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(point_robot_dataset.path, copy)
    (copy / "dataset_info.json").unlink()
    with pytest.raises(DatasetFormatError, match=r"data file dataset_info\.json is missing"):
        load_trajectories(copy)


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("observation", np.nan, "observation holds NaN"),
        ("reward", np.inf, "reward holds NaN"),
        ("task_index", 99, "task index 99"),
    ],
)
@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_damaged_data_is_refused_on_load_and_never_trained_on(point_robot_dataset, tmp_path, column, value, match):
    copy = damaged_copy(point_robot_dataset, tmp_path, column, 123, value)
    with pytest.raises(DatasetFormatError, match=match):
        load_trajectories(copy)
    with pytest.raises(DatasetFormatError, match=match):
        train(TrainConfig(data=str(copy), output_dir=str(tmp_path / "run"), max_steps=2, report_to="none"))
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.reliability("faults", "clear error, nothing written")
def test_a_loss_that_goes_nan_stops_training_and_saves_nothing(point_robot_dataset, tmp_path, monkeypatch):
    import torch

    from seqmeta.models.prompt_dt.modeling_prompt_dt import PromptDTModel

    forward = PromptDTModel.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        calls["n"] += 1
        if kwargs.get("return_loss") and calls["n"] >= 3:
            out.loss = out.loss * torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(PromptDTModel, "forward", poisoned)
    config = tiny_config(point_robot_dataset.path, tmp_path / "run", 6, log_every=2, checkpoint_every=100, eval_every=0)
    with pytest.raises(ConfigError, match="training loss is nan by step 4"):
        train(config)
    assert not (tmp_path / "run" / "model").exists()


def _edited_model(tiny_trained_model, tmp_path, edit):
    import json

    folder = tmp_path / "model"
    shutil.copytree(tiny_trained_model, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("state_mean"), "lacks \\['state_mean'\\]"),
        (lambda c: c.update(num_layers=c["num_layers"] + 1), "weights do not match config.json"),
        (lambda c: c.update(model_type="gpt2"), "not a seqmeta model"),
        (lambda c: c.update(hidden_size=2 * c["hidden_size"]), "tensors of other sizes"),
        (lambda c: c.update(state_std=[0.0] * len(c["state_std"])), "state_std must be positive"),
        (lambda c: c.update(state_std=[-1.0] * len(c["state_std"])), "state_std must be positive"),
        (lambda c: c.update(state_mean=[float("nan")] * len(c["state_mean"])), "state_mean holds NaN"),
        (lambda c: c.update(action_low=c["action_high"], action_high=c["action_low"]), "must be below action_high"),
        (lambda c: c.update(return_scale=0.0), "return_scale must be positive"),
        (lambda c: c.update(context_length=0), "context_length is 0"),
        (lambda c: c.update(num_heads=3), "not divisible by num_heads 3"),
        (lambda c: c.update(state_dim=c["state_dim"] + 1), "state_mean has 2 entries; the config says 3"),
    ],
)
@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_eval_refuses_a_model_folder_it_would_run_wrongly(
    tiny_trained_model, point_robot_dataset, tmp_path, capsys, edit, message
):
    folder = _edited_model(tiny_trained_model, tmp_path, edit)
    argv = [
        "eval",
        "--model",
        str(folder),
        "--data",
        str(point_robot_dataset.path),
        "--output-dir",
        str(tmp_path / "e"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "e" / "eval_results.json").exists()


@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_a_missing_local_model_path_is_not_taken_for_a_hub_id(point_robot_dataset, tmp_path, capsys):
    argv = [
        "eval",
        "--model",
        "runs/nope/model",
        "--data",
        str(point_robot_dataset.path),
        "--output-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "no model folder at runs/nope/model" in capsys.readouterr().err
    for given in ("", str(point_robot_dataset.path / "seqmeta.json")):  # nothing, or a file
        with pytest.raises(ConfigError, match="is not a model folder"):
            seqmeta.load_model(given)
    # push as well: an absolute path with one slash reads like org/name, but names a local folder
    missing = str(tmp_path / "nope")
    assert main(["push", "--model", missing, "--repo-id", "org/name"]) == 2
    assert f"no model folder at {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "verb",
    [
        ["collect", "--family", "point-robot", "--episodes-per-task", "1"],
        ["eval", "--model", "point-robot-prompt-dt"],
        ["train", "--config", "point_robot", "--max-steps", "1"],
        ["demo"],
    ],
    ids=lambda v: v[0],
)
@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(
    point_robot_dataset, tmp_path, capsys, verb
):
    """A folder under a file (or on a read-only disk) is refused up front, not after the rollouts or training."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    data = [] if verb[0] in ("collect", "demo") else ["--data", str(point_robot_dataset.path)]
    assert main([*verb, *data, "--output-dir", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{blocker} is a file, not a folder; choose another --output-dir" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "not a folder"


@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_check_writable_probes_the_nearest_existing_folder(tmp_path, monkeypatch):
    import tempfile

    from seqmeta.errors import StorageError
    from seqmeta.io import check_writable

    check_writable(tmp_path / "new" / "deeper")  # not created: only probed
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    with pytest.raises(StorageError, match=r"cannot be written \(Permission denied in .*\); choose a folder"):
        check_writable(tmp_path / "new")


@pytest.mark.reliability("faults", "clear error, nothing written")
def test_an_unforeseen_failure_is_one_line_unless_debug(monkeypatch, capsys, tmp_path):
    import seqmeta.cli as cli

    def boom(args):
        raise RuntimeError("disk on fire")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda **kw: _with_func(parser(**kw), boom))
    assert cli.main(["collect", "--family", "point-robot", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: disk on fire" in err and "--debug" in err
    assert "Traceback" not in err
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(["--debug", "collect", "--family", "point-robot", "--out", str(tmp_path / "d")])


def _with_func(parser, func):
    parser.set_defaults(func=func)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser


@pytest.mark.reliability("bad data", "right result")
def test_held_out_tasks_shape_neither_the_normalization_nor_the_fixed_target(point_family, tmp_path):
    """Stats and the `fixed` target come from the training tasks: changing held-out data changes neither."""
    from seqmeta.data.collect import collect_episodes
    from seqmeta.data.dataset import load_trajectories, write_dataset
    from seqmeta.data.episodes import Episodes

    task_set = point_family.task_set()
    params = list(task_set.params)
    base = collect_episodes(point_family, "expert", params, 2, progress=False)
    test = np.isin(base.task_index, list(task_set.test_indices))
    odd = Episodes(**{f: getattr(base, f) for f in base.__dataclass_fields__})
    steps = np.repeat(test, base.lengths)
    odd.observations = np.where(steps[:, None], odd.observations * 50 + 7, odd.observations)
    odd.rewards = np.where(steps, 100.0, odd.rewards).astype(np.float32)
    a = load_trajectories(write_dataset(base, point_family, tmp_path / "a"))
    b = load_trajectories(write_dataset(odd, point_family, tmp_path / "b"))
    assert a.stats == b.stats
    assert a.best_training_return() == b.best_training_return() < b.episodes["return"].max()


# ---- every declared range of every config, generated from the declarations --------------------


def _range_cases():
    """(config class, field, bad value, expected message) for each bound, choice set and finite float."""
    import dataclasses
    import typing

    from seqmeta.evaluation import EvalProtocol
    from seqmeta.finetune import FinetuneConfig
    from seqmeta.selfsupervise import SelfSuperviseConfig

    cases = []
    for cls in (TrainConfig, FinetuneConfig, SelfSuperviseConfig, EvalProtocol):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta, kind = f.metadata, hints[f.name]
            low, high = meta.get("low"), meta.get("high")
            if meta.get("choices"):
                cases.append((cls, f.name, "no-such-choice", f"{f.name} must be one of"))
            if low is not None:
                bad = low if meta.get("low_open") else (low - 1 if kind is int else low - 0.5)
                cases.append((cls, f.name, kind(bad), f"{f.name} must be {'>' if meta.get('low_open') else '>='}"))
            if high is not None:
                cases.append((cls, f.name, kind(high + 1), f"{f.name} must be <="))
            if kind is float:
                cases.append((cls, f.name, float("nan"), f"{f.name} must be a finite number"))
            if kind in (int, float):
                cases.append((cls, f.name, "ten", f"{f.name} must be {kind.__name__}"))
    return cases


RANGE_CASES = _range_cases()


@pytest.mark.parametrize(
    ("cls", "name", "value", "message"),
    RANGE_CASES,
    ids=[f"{c.__name__}.{n}={v!r}" for c, n, v, _ in RANGE_CASES],
)
@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_every_declared_range_is_enforced(tmp_path, cls, name, value, message):
    """A recipe with the value is refused by name, with the field's help, before any work."""
    from seqmeta.configs import load_config

    recipe = tmp_path / "recipe.yaml"
    text = json.dumps(value) if isinstance(value, str) else ".nan" if value != value else value  # YAML's NaN
    recipe.write_text(f"{name}: {text}\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_config(cls, recipe)
    assert str(recipe) in str(raised.value) and "\n" not in str(raised.value)


def test_the_generated_cases_cover_every_bounded_field():
    import dataclasses

    bounded = {
        (TrainConfig, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.metadata.get("low") is not None or f.metadata.get("high") is not None or f.metadata.get("choices")
    }
    assert bounded <= {(c, n) for c, n, _, _ in RANGE_CASES} and len(RANGE_CASES) >= 60


# ---- faults: a full disk ---------------------------------------------------------------------


def _disk_full(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.reliability("faults", "clear error, nothing written")
def test_a_full_disk_while_collecting_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", _disk_full)
    out = tmp_path / "data"
    code = main(["collect", "--family", "point-robot", "--episodes-per-task", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip().split("\r")[-1]  # after the progress bar
    assert code == 2 and "no space left on the device while writing" in err and "Traceback" not in err, err
    assert err.count("error:") == 1
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a hidden partial one


@pytest.mark.parametrize("writer", ["json", "plot"])
@pytest.mark.reliability("faults", "refused, files untouched")
def test_a_full_disk_keeps_the_previous_file_whole(tmp_path, monkeypatch, writer):
    import os

    from seqmeta.errors import StorageError
    from seqmeta.io import atomic_write_json
    from seqmeta.plots import plot_adaptation_curve

    path = tmp_path / ("results.json" if writer == "json" else "curve.png")

    def write():
        if writer == "json":
            atomic_write_json(path, {"value": 1.0})
        else:
            settings = [{"prompt_trajectories": k, "normalized": 10.0 * k} for k in (0, 1)]
            results = {"settings": settings, "protocol": {"prompt_source": "expert", "tasks": [45]}, "family": "f"}
            plot_adaptation_curve(results, path)

    write()
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(StorageError, match="no space left on the device"):
        write()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.reliability("bad options", "right result")
def test_every_flag_a_message_suggests_exists():
    """Error messages and help name flags (`--overwrite`, `--resume`, ...): each one is a real flag of a verb."""
    from pathlib import Path

    import seqmeta
    from seqmeta.cli import build_parser

    parser = build_parser()
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for sub in parser._subparsers._group_actions:
        for verb in sub.choices.values():
            flags |= {opt for action in verb._actions for opt in action.option_strings}
        flags |= {"--help"}
    from seqmeta.behavior.__main__ import build_parser as behavior_parser  # python -m seqmeta.behavior

    flags |= {opt for action in behavior_parser()._actions for opt in action.option_strings}
    source = Path(seqmeta.__file__).parent
    suggested = set()
    for path in source.rglob("*.py"):
        suggested |= {m for m in re.findall(r"`[^`]*?(--[a-z][a-z0-9_-]+)", path.read_text())}
    assert suggested
    others = {"--flag", "--nproc_per_node", "--no-deps"}  # a docstring's placeholder; torchrun's and pip's own flags
    missing = sorted(f for f in suggested - others if f not in flags)
    assert not missing, f"messages suggest flags no verb has: {missing}"


@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_a_training_log_is_read_whole_or_refused_by_line(tmp_path):
    from seqmeta.results import read_log

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 20, "loss": 0.5}\n{"step": 40, "loss": 0.4}\n{"step": 6')  # killed mid-append
    assert [e["step"] for e in read_log(log)] == [20, 40]
    log.write_text('{"step": 20, "loss": 0.5}\n{"loss": 0.4}\n')
    with pytest.raises(ConfigError, match="line 2 is not a training log entry"):
        read_log(log)
