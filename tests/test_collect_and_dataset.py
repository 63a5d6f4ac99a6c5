import dataclasses
import json
import signal
import subprocess
import sys
import time

import datasets
import numpy as np
import pytest

import seqmeta
from seqmeta.data import dataset as dataset_module
from seqmeta.data.collect import collect_dataset, rollout
from seqmeta.data.dataset import COLUMNS, load_trajectories, write_dataset
from seqmeta.errors import BehaviorPolicyError, DatasetFormatError, DatasetNotFoundError

from .conftest import make_episodes


def test_collected_dataset_opens_with_datasets_and_has_the_schema(point_robot_dataset):
    hf = datasets.load_from_disk(str(point_robot_dataset.path))
    assert tuple(hf.column_names) == COLUMNS
    assert hf.features["observation"].length == 2 and hf.features["action"].length == 2
    assert len(hf) == 4 * 4 * 50 * 20  # qualities x episodes x tasks x steps
    meta = point_robot_dataset.meta
    assert [t["num_episodes"] for t in meta.tasks] == [16] * 50
    assert {t["split"] for t in meta.tasks if t["task_index"] >= 45} == {"test"}
    assert set(meta.qualities) == {"expert", "medium", "mixed", "random"}
    assert len(meta.stats["observation_mean"]) == 2
    card = (point_robot_dataset.path / "README.md").read_text()
    assert "reinforcement-learning" in card and "| expert |" in card


def test_return_to_go_and_episode_layout(point_robot_dataset):
    d = point_robot_dataset
    ep = d.episodes
    for e in (0, 7, len(ep["start"]) - 1):
        rows = slice(ep["start"][e], ep["start"][e] + ep["length"][e])
        rewards = d.column("reward")[rows].astype(np.float64)
        np.testing.assert_allclose(d.column("return_to_go")[rows], np.cumsum(rewards[::-1])[::-1], rtol=1e-5, atol=1e-5)
        assert d.column("truncated")[rows][-1] and not d.column("truncated")[rows][:-1].any()


def test_quality_levels_are_ordered(point_robot_dataset):
    q = point_robot_dataset.meta.qualities
    assert q["expert"]["mean_return"] > q["medium"]["mean_return"] > q["random"]["mean_return"]
    assert q["expert"]["mean_return"] > q["mixed"]["mean_return"] > q["random"]["mean_return"]


def test_collection_is_deterministic_for_a_seed(point_family):
    a = rollout(point_family, "mixed", [0, 1], 3, seed=5, progress=False)
    b = rollout(point_family, "mixed", [0, 1], 3, seed=5, progress=False)
    c = rollout(point_family, "mixed", [0, 1], 3, seed=6, progress=False)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)
    assert list(a.task_index) == [0, 0, 0, 1, 1, 1]


def test_cheetah_vel_collection_with_random_policy(tmp_path):
    d = collect_dataset("cheetah-vel", "random", str(tmp_path / "cv"), tasks="2,7", episodes_per_task=1, progress=False)
    assert d.column("observation").shape == (400, 17) and d.column("action").shape == (400, 6)
    assert sorted(set(d.column("task_index").tolist())) == [2, 7]


@pytest.mark.parametrize("family", ["cheetah-vel", "cheetah-dir"])
def test_shipped_policies_collect_every_level(tmp_path, family):
    from seqmeta.behavior.policies import available_qualities

    levels = available_qualities(seqmeta.get_family(family))
    if levels == ["random"]:
        pytest.skip(f"no shipped {family} behavior policy in this checkout")
    d = collect_dataset(family, levels, str(tmp_path / family), tasks="0", episodes_per_task=1, progress=False)
    assert set(d.meta.qualities) == set(levels)
    again = collect_dataset(family, levels, str(tmp_path / "again"), tasks="0", episodes_per_task=1, progress=False)
    np.testing.assert_array_equal(again.column("action"), d.column("action"))  # stochastic levels too
    returns = {q: v["mean_return"] for q, v in d.meta.qualities.items()}
    assert returns["expert"] > returns["random"]


def test_unknown_quality_names_the_available_ones(point_family, tmp_path):
    mine = dataclasses.replace(seqmeta.get_family("ant-dir"), name="my-ant-dir")  # no behavior policy ships for it
    with pytest.raises(BehaviorPolicyError, match="available"):
        collect_dataset(mine, "expert", str(tmp_path / "x"), progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.reliability("attacks", "refused, files untouched")
def test_existing_output_is_kept_unless_overwrite(tmp_path, point_family):
    out = tmp_path / "d"
    collect_dataset(point_family, "expert", str(out), tasks="0", episodes_per_task=2, progress=False)
    before = (out / "seqmeta.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        collect_dataset(point_family, "random", str(out), tasks="0", episodes_per_task=2, progress=False)
    assert (out / "seqmeta.json").read_text() == before
    collect_dataset(point_family, "random", str(out), tasks="0", episodes_per_task=2, overwrite=True, progress=False)
    assert list(load_trajectories(out).meta.qualities) == ["random"]


@pytest.mark.reliability("faults", "refused, files untouched")
def test_crash_while_writing_leaves_no_dataset(tmp_path, point_family, monkeypatch):
    def boom(meta):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dataset_module, "render_dataset_card", boom)  # dies after the Arrow data is written
    with pytest.raises(RuntimeError):
        write_dataset(make_episodes([20] * 5), point_family, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.reliability("faults", "refused, files untouched")
def test_killed_collection_leaves_no_folder_that_looks_complete(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seqmeta",
            "collect",
            "--family",
            "cheetah-vel",
            "--quality",
            "random",
            "--episodes-per-task",
            "50",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    with pytest.raises(DatasetNotFoundError):
        load_trajectories(out)


@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_bad_episodes_are_refused_with_the_fix(point_family, tmp_path):
    eps = make_episodes([20, 20])
    eps.observations = np.zeros((40, 3), np.float32)
    with pytest.raises(DatasetFormatError, match="2-dimensional"):
        write_dataset(eps, point_family, tmp_path / "a")
    eps = make_episodes([20, 20])
    eps.rewards[25] = np.nan
    with pytest.raises(DatasetFormatError, match=r"NaN or inf at step 25 \(episode 1\)"):
        write_dataset(eps, point_family, tmp_path / "b")
    eps = make_episodes([20, 0, 20])
    with pytest.raises(DatasetFormatError, match="episode 1 is empty"):
        write_dataset(eps, point_family, tmp_path / "c")
    eps = make_episodes([20], tasks=[50])
    with pytest.raises(DatasetFormatError, match="task index 50"):
        write_dataset(eps, point_family, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_damaged_dataset_folders_are_named(point_family, tmp_path):
    path = write_dataset(make_episodes([20] * 5), point_family, tmp_path / "d")
    with pytest.raises(DatasetNotFoundError, match="seqmeta collect"):
        load_trajectories(tmp_path / "nothing")
    arrow = next(path.glob("data-*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(DatasetFormatError, match="changed since it was written"):
        load_trajectories(path)
    unchecked = json.loads((path / "seqmeta.json").read_text())  # as written before checksums were recorded
    unchecked.pop("checksums")
    (path / "seqmeta.json").write_text(json.dumps(unchecked))
    with pytest.raises(DatasetFormatError, match="truncated or corrupt"):
        load_trajectories(path)

    path = write_dataset(make_episodes([20] * 5), point_family, tmp_path / "e")
    hf = datasets.load_from_disk(str(path)).remove_columns(["return_to_go"])
    hf.save_to_disk(str(tmp_path / "f"))
    (tmp_path / "f" / "seqmeta.json").write_text(json.dumps(unchecked))
    with pytest.raises(DatasetFormatError, match=r"missing columns \['return_to_go'\]"):
        load_trajectories(tmp_path / "f")

    shuffled = datasets.load_from_disk(str(path)).shuffle(seed=0).flatten_indices()
    shuffled.save_to_disk(str(tmp_path / "g"))
    (tmp_path / "g" / "seqmeta.json").write_text(json.dumps(unchecked))
    with pytest.raises(DatasetFormatError, match="contiguous"):
        load_trajectories(tmp_path / "g")


def test_metadata_is_plain_json(point_robot_dataset):
    meta = json.loads((point_robot_dataset.path / "seqmeta.json").read_text())
    assert meta["family"] == "point-robot" and meta["format_version"] == 1
    assert not any(p.suffix in (".pkl", ".pickle") for p in point_robot_dataset.path.iterdir())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.pop("family"), "missing"),
        (lambda m: m.update(format_version=2), "format version 2"),
        (lambda m: m["stats"]["observation_mean"].__setitem__(0, float("nan")), "observation_mean"),
        (lambda m: m["stats"].update(return_scale=0.0), "non-positive"),
        (lambda m: m["stats"]["observation_std"].append(1.0), "observation_std must be 2"),
        (lambda m: m.update(action_low=[0.2, 0.2]), "action_low exceeds"),
        (lambda m: m["tasks"][3].update(task_index=7), "task entry 3"),
        (lambda m: m.update(horizon="20"), "horizon must be a positive integer"),
        (lambda m: m.update(qualities={}), "qualities"),
    ],
)
@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_a_damaged_seqmeta_json_is_refused_on_load(point_robot_dataset, tmp_path, edit, match):
    import shutil

    from seqmeta.errors import DatasetFormatError

    copy = tmp_path / "d"
    shutil.copytree(point_robot_dataset.path, copy)
    meta = json.loads((copy / "seqmeta.json").read_text())
    edit(meta)
    (copy / "seqmeta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match=match):
        load_trajectories(copy)


@pytest.mark.reliability("attacks", "refused, files untouched")
def test_overwrite_replaces_only_folders_seqmeta_wrote(tmp_path):
    from seqmeta.io import atomic_directory

    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    afile = tmp_path / "a-file"
    afile.write_text("keep")
    for target in (mine, afile):
        with pytest.raises(FileExistsError, match="not a folder seqmeta wrote"):
            collect_dataset("point-robot", "random", str(target), tasks="0", episodes_per_task=1, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work" and afile.read_text() == "keep"
    out = tmp_path / "d"
    collect_dataset("point-robot", "random", str(out), tasks="0", episodes_per_task=1, progress=False)
    again = collect_dataset("point-robot", "expert", str(out), tasks="0", episodes_per_task=1, overwrite=True)
    assert list(again.meta.qualities) == ["expert"]
    with pytest.raises(FileExistsError, match="already exists"), atomic_directory(out):
        pass


@pytest.mark.reliability("attacks", "refused, files untouched")
def test_a_quality_name_that_leaves_the_folder_is_refused(tmp_path):
    from seqmeta.data.dataset import write_dataset
    from seqmeta.errors import DatasetFormatError

    from .conftest import make_episodes

    episodes = make_episodes([5, 5], tasks=[0, 1], quality="../../escape")
    with pytest.raises(DatasetFormatError, match="not plain names"):
        write_dataset(episodes, seqmeta.get_family("point-robot"), tmp_path / "d")
    assert not (tmp_path / "d").exists() and not list(tmp_path.parent.glob("escape*"))


def test_episodes_take_reorders_whole_episodes():
    from .conftest import make_episodes

    episodes = make_episodes([3, 5, 2], tasks=[7, 8, 9])
    back = episodes.take(np.array([2, 0]))
    assert back.lengths.tolist() == [2, 3] and back.task_index.tolist() == [9, 7]
    assert back.observations[:, 0].tolist() == [2, 2, 0, 0, 0]  # observation column 0 is the episode number
    assert np.array_equal(back.rewards[2:], episodes.rewards[:3])


def test_collected_episodes_come_sorted_by_task_whatever_the_order_asked():
    from seqmeta.data.collect import rollout

    family = seqmeta.get_family("point-robot")
    episodes = rollout(family, "expert", [7, 2, 5], 2, progress=False)
    assert episodes.task_index.tolist() == [2, 2, 5, 5, 7, 7]


def test_more_tasks_than_a_family_runs_at_once_are_collected_in_groups(monkeypatch):
    """A family's ``max_envs`` bounds the envs alive at once (a Meta-World env holds its own MuJoCo model:
    500 of them at once ran out of memory); collection then runs groups of tasks one after another, each env
    seeded apart."""
    from seqmeta.data.collect import collect_episodes

    family = seqmeta.get_family("point-robot")
    params = list(family.task_set().params)[:5]
    whole = collect_episodes(family, "expert", params, 2, progress=False, task_index=[9, 3, 7, 1, 5])
    import seqmeta.data.collect as collect

    sizes, run = [], collect.run_episodes
    monkeypatch.setattr(collect, "run_episodes", lambda envs, *a, **k: sizes.append(len(envs)) or run(envs, *a, **k))
    monkeypatch.setitem(family.__dict__, "max_envs", 2)
    grouped = collect_episodes(family, "expert", params, 2, progress=False, task_index=[9, 3, 7, 1, 5])
    assert sizes == [2, 2, 2]  # 2 tasks of one env each, 2 more, then the last task in 2 env copies: never over 2
    assert grouped.task_index.tolist() == [1, 1, 3, 3, 5, 5, 7, 7, 9, 9] == whole.task_index.tolist()
    goals = np.array([params[[9, 3, 7, 1, 5].index(t)]["goal"] for t in grouped.task_index])
    np.testing.assert_allclose(
        grouped.actions, np.clip(np.repeat(goals, grouped.lengths, axis=0) - grouped.observations, -0.1, 0.1), atol=1e-6
    )  # each task's own expert
    starts = grouped.observations[grouped.starts]
    assert len(np.unique(starts, axis=0)) == 10  # no env seed used twice
