"""Rollout videos: episodes of a model rendered headless and encoded as MP4 (H.264 through PyAV).

    seqmeta eval --model DIR --data DIR --output-dir OUT --video 2     # OUT/video_task7_prompt1_0.mp4, ...

MuJoCo renders offscreen through ``MUJOCO_GL`` (``egl`` unless set: GPU or Mesa's EGL; ``osmesa``
where no EGL exists). Episodes run through the rollout engine with the same prompts and targets as
the evaluation; rendering does not change the physics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from seqmeta.errors import ConfigError, import_extra

os.environ.setdefault("MUJOCO_GL", "egl")  # before any MuJoCo renderer is made

FPS = 30
SIZE = (320, 240)


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: int = FPS) -> Path:
    """(H, W, 3) uint8 frames -> an H.264 MP4 at ``path``, written atomically."""
    av = import_extra("av", "video", "writing videos")
    path = Path(path)
    if not frames:
        raise ConfigError(f"no frames to write to {path}")
    height, width = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        for frame in frames:
            image = np.ascontiguousarray(frame[: stream.height, : stream.width, :3], dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)
    return path


class FrameRecorder:
    """The rollout engine's ``frames`` hook: one frame per env after the reset and after every step."""

    def __init__(self, num_envs: int):
        self.frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]

    def __call__(self, step: int, venv) -> None:
        for i, env in enumerate(venv.envs):
            frame = env.render()
            if frame is None:
                raise ConfigError("the env renders nothing: make it with render_mode='rgb_array' to record videos")
            self.frames[i].append(np.asarray(frame))


def record_agent_videos(
    model,
    env_fns: Sequence[Callable],
    max_steps: int,
    prompts: dict[str, np.ndarray] | None,
    targets,
    seed: int,
    paths: Sequence[str | Path],
) -> list[Path]:
    """One episode of ``model`` per env factory (made with ``render_mode='rgb_array'``), each written
    as an MP4 to the matching path; returns the paths."""
    from seqmeta.agent import Agent
    from seqmeta.rollout import run_episodes

    recorder = FrameRecorder(len(env_fns))
    agent = Agent(model, len(env_fns), prompts=prompts, target_returns=targets)
    out = run_episodes(env_fns, agent, max_steps=max_steps, seed=seed, frames=recorder)
    written = []
    for i, (path, n) in enumerate(zip(paths, out.lengths, strict=True)):
        # the first state, then the state after each step but the last (there the env has reset already)
        written.append(write_mp4(recorder.frames[i][: int(n)], path))
    return written
