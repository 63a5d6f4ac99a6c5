"""The loopback Hub of tests/hub_server.py against the real clients, each run in a subprocess with ``hub_env``."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def run(code: str, env: dict, **extra_env: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line, which is returned."""
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env | extra_env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"client failed:\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_upload_folder_then_snapshot_download_online_and_offline(hub_server, hub_env, tmp_path):
    folder = tmp_path / "model"
    (folder / "img").mkdir(parents=True)
    files = {"config.json": b'{"hidden": 8}\n', "w.safetensors": os.urandom(100_000), "img/plot.png": os.urandom(3000)}
    for path, data in files.items():
        (folder / path).write_bytes(data)
    code = f"""
        import json
        from huggingface_hub import HfApi, snapshot_download
        api = HfApi()
        for _ in range(2):  # the second time the repo and the branch exist
            api.create_repo("tester/files", private=True, exist_ok=True)
            api.create_branch("tester/files", branch="dev", exist_ok=True)
        commits = [
            api.upload_folder(folder_path={str(folder)!r}, repo_id="tester/files", revision="dev", commit_message="up")
            for _ in range(2)
        ]
        info = api.model_info("tester/files", revision="dev")
        path = snapshot_download("tester/files", revision="dev")
        print(json.dumps({{
            "commits": [c.oid for c in commits], "sha": info.sha, "siblings": [s.rfilename for s in info.siblings],
            "tree": sorted(api.list_repo_files("tester/files", revision="dev")), "path": path,
            "exists": [api.file_exists("tester/files", f, revision="dev") for f in ("w.safetensors", "nope.bin")],
            "whoami": api.whoami()["name"],
        }}))
    """
    out = run(code, hub_env)
    head = hub_server.head("tester/files", revision="dev")
    assert out["commits"] == [head, head] and len(head) == 40  # the second upload changed nothing: no new commit
    assert out["sha"] == head and out["whoami"] == "tester" and out["exists"] == [True, False]
    assert out["tree"] == sorted(out["siblings"]) == sorted([".gitattributes", *files])
    assert hub_server.files("tester/files", revision="dev") == {**hub_server.files("tester/files"), **files}
    assert list(hub_server.files("tester/files")) == [".gitattributes"]  # main untouched
    assert hub_server.count("lfs_upload") == 2  # the png and the safetensors, each once; config.json is regular
    for path, data in files.items():
        assert (Path(out["path"]) / path).read_bytes() == data

    answered = len(hub_server.requests)
    offline = run(
        """
        import json
        from huggingface_hub import hf_hub_download, snapshot_download
        print(json.dumps({"path": snapshot_download("tester/files", revision="dev"),
                          "file": hf_hub_download("tester/files", "w.safetensors", revision="dev")}))
        """,
        hub_env,
        HF_HUB_OFFLINE="1",
    )
    assert offline["path"] == out["path"] and len(hub_server.requests) == answered  # all from the cache
    assert Path(offline["file"]).read_bytes() == files["w.safetensors"]


def test_transformers_model_round_trip(hub_server, hub_env, tmp_path):
    code = f"""
        import json, torch, transformers
        from huggingface_hub import HfApi, ModelCard
        torch.manual_seed(0)
        config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=1, vocab_size=10, n_positions=16)
        model = transformers.GPT2Model(config)
        model.save_pretrained({str(tmp_path / "gpt")!r})
        open({str(tmp_path / "gpt" / "README.md")!r}, "w").write("---\\nlicense: apache-2.0\\n---\\n# Tiny\\n")
        api = HfApi()
        api.create_repo("tester/tiny-gpt2", exist_ok=True)
        api.create_branch("tester/tiny-gpt2", branch="v1", exist_ok=True)
        for revision in ("v1", "main"):
            api.upload_folder(folder_path={str(tmp_path / "gpt")!r}, repo_id="tester/tiny-gpt2", revision=revision)
        loaded = transformers.GPT2Model.from_pretrained("tester/tiny-gpt2", revision="v1")
        auto = transformers.AutoModel.from_pretrained("tester/tiny-gpt2", revision="v1")
        want = model.state_dict()
        same = [all(torch.equal(want[k], m.state_dict()[k]) for k in want) for m in (loaded, auto)]
        card = ModelCard.load("tester/tiny-gpt2")
        print(json.dumps({{"same": same, "license": card.data.license, "auto": type(auto).__name__}}))
    """
    out = run(code, hub_env)
    assert out == {"same": [True, True], "license": "apache-2.0", "auto": "GPT2Model"}
    assert hub_server.count("lfs_upload") == 1  # the second upload found model.safetensors already stored
    missing = [r for r in hub_server.requests if r[2] == "resolve" and r[3] == 404]
    assert missing and all("adapter_config.json" in r[1] for r in missing)  # transformers probes for a PEFT adapter
    assert not hub_server.unhandled


def test_datasets_push_to_hub_two_configs_then_load_dataset(hub_server, hub_env):
    code = """
        import json, datasets
        expert = datasets.Dataset.from_dict({"obs": [[0.5, 1.0], [2.0, 3.0]], "quality": ["expert"] * 2})
        rand = datasets.Dataset.from_dict({"obs": [[9.0, 8.0]], "quality": ["random"]})
        expert.push_to_hub("tester/trajectories", config_name="expert", split="train")
        rand.push_to_hub("tester/trajectories", config_name="random", split="train")
        loaded = [datasets.load_dataset("tester/trajectories", q, split="train") for q in ("expert", "random")]
        print(json.dumps({"same": [loaded[0].to_dict() == expert.to_dict(), loaded[1].to_dict() == rand.to_dict()]}))
    """
    assert run(code, hub_env) == {"same": [True, True]}
    files = hub_server.files("tester/trajectories", "dataset")
    assert {"expert/train-00000-of-00001.parquet", "random/train-00000-of-00001.parquet", "README.md"} < set(files)
    assert b"config_name: expert" in files["README.md"] and b"config_name: random" in files["README.md"]
    assert not hub_server.unhandled


@pytest.mark.parametrize(
    ("route", "error", "raised"),
    [("commit", "reset", "ReadError"), ("commit", 500, "HfHubHTTPError"), ("lfs_upload", 403, "RuntimeError")],
)
def test_a_failed_push_changes_nothing_and_can_be_repeated(hub_server, hub_env, tmp_path, route, error, raised):
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "a.json").write_text("{}")
    (tmp_path / "up" / "w.safetensors").write_bytes(os.urandom(20_000))
    hub_server.storage.create_repo("model", "tester/flaky", private=False)
    before = hub_server.head("tester/flaky")
    hub_server.fail_next(route, error=error)
    hub_server.fail_next("lfs_upload", error=500)  # the next LFS PUT: huggingface_hub retries it itself after 1 s
    code = f"""
        import json
        from huggingface_hub import HfApi
        def push():
            return HfApi().upload_folder(folder_path={str(tmp_path / "up")!r}, repo_id="tester/flaky").oid
        try:
            push()
            first = "no error"
        except Exception as e:
            first = type(e).__name__
        print(json.dumps({{"first": first, "second": push()}}))
    """
    out = run(code, hub_env)
    assert out["first"] == raised
    assert out["second"] == hub_server.head("tester/flaky") != before
    assert hub_server.files("tester/flaky")["w.safetensors"] == (tmp_path / "up" / "w.safetensors").read_bytes()

    def statuses(name):
        return [r[3] for r in hub_server.requests if r[2] == name]

    assert statuses("commit") == ([error, 200] if route == "commit" else [200])
    assert statuses("lfs_upload") == ([error, 500, 200] if route == "lfs_upload" else [500, 200])
