"""Run by tests/test_trainer.py under ``torchrun --nproc_per_node 2`` (CPU, gloo): meta-trains with the
real ``seqmeta.trainer.train`` and writes, per rank, a fingerprint of every batch it sampled and of its
final weights to OUT/rank<r>-<steps>[resume].json.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/distributed_worker.py DATA OUT [STEPS [resume]]

``SEQMETA_WORKER_OPTIONS`` (JSON) overrides TrainConfig fields, e.g. ``{"use_prompt": false}``.
"""

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

import seqmeta.trainer as trainer


def main(data: str, out: str, steps: str = "6", resume: str = "") -> None:
    rank = int(os.environ["RANK"])
    fingerprints: list[str] = []
    sample = trainer.EpisodeBatches.sample

    def recording_sample(self):
        batch = sample(self)
        fingerprints.append(hashlib.sha256(batch["observation"].tobytes()).hexdigest())
        return batch

    save_model = trainer.save_model

    def recording_save(accelerator, model, *args, **kwargs):
        weights = accelerator.unwrap_model(model).state_dict()
        digest = hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest()
        summary = {"world_size": accelerator.num_processes, "batches": fingerprints, "weights": digest}
        Path(out, f"rank{rank}-{steps}{resume}.json").write_text(json.dumps(summary))
        return save_model(accelerator, model, *args, **kwargs)

    trainer.EpisodeBatches.sample = recording_sample
    trainer.save_model = recording_save
    torch.set_num_threads(1)
    config = trainer.TrainConfig(
        data=data,
        output_dir=str(Path(out, "run")),
        max_steps=int(steps),
        batch_size=8,
        segment_length=8,
        context_length=4,
        hidden_size=32,
        num_layers=1,
        checkpoint_every=3,
        eval_every=0,  # validation batches are the same on every rank; record training batches only
        report_to="none",
    )
    config = dataclasses.replace(config, **json.loads(os.environ.get("SEQMETA_WORKER_OPTIONS", "{}")))
    trainer.train(config, resume=resume == "resume")


if __name__ == "__main__":
    main(*sys.argv[1:])
