"""Rollout videos: `seqmeta eval --video N` renders episodes headless (MUJOCO_GL=egl) into MP4s."""

import av
import numpy as np
import pytest

import seqmeta
from seqmeta.data.collect import collect_dataset
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.models import PromptDTConfig, PromptDTModel
from seqmeta.video import write_mp4


def frames_of(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_write_mp4_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = [
        np.full((48, 64, 3), 10 * i, np.uint8) + rng.integers(0, 5, (48, 64, 3), dtype=np.uint8) for i in range(12)
    ]
    path = write_mp4(frames, tmp_path / "v.mp4")
    back = frames_of(path)
    assert len(back) == 12 and back[0].shape == (48, 64, 3)
    assert abs(float(back[-1].mean()) - float(frames[-1].mean())) < 3  # lossy, but the same picture
    assert not list(tmp_path.glob(".*tmp"))


def test_eval_writes_videos_of_the_evaluated_model(tmp_path):
    data = collect_dataset(
        "cheetah-vel", "expert", str(tmp_path / "d"), tasks="2,3", episodes_per_task=1, progress=False
    )
    model = PromptDTModel(PromptDTConfig.from_dataset(data, hidden_size=16, num_layers=1, context_length=4))
    protocol = EvalProtocol(data=str(data.path), tasks="2", prompt_trajectories="0,1", episodes=1)
    results = evaluate(model, protocol, tmp_path / "ev", progress=False, videos=1)
    assert results["videos"] == ["video_task2_prompt1_0.mp4"]
    frames = frames_of(tmp_path / "ev" / "video_task2_prompt1_0.mp4")
    assert len(frames) == seqmeta.get_family("cheetah-vel").horizon
    assert frames[0].std() > 5 and np.abs(frames[-1].astype(int) - frames[0]).mean() > 1  # a scene, and it moves


def test_point_robot_has_no_renderer(point_robot_dataset, tmp_path):
    model = PromptDTModel(PromptDTConfig.from_dataset(point_robot_dataset, hidden_size=16, num_layers=1))
    protocol = EvalProtocol(data=str(point_robot_dataset.path), tasks="45", prompt_trajectories="1", episodes=1)
    with pytest.raises(ValueError, match=r"cannot be rendered|renders nothing"):
        evaluate(model, protocol, tmp_path / "ev", progress=False, videos=1)
    assert not (tmp_path / "ev" / "eval_results.json").exists()  # refused before the sweep
