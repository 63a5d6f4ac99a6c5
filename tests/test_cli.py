import os
import subprocess
import sys

import datasets
import h5py
import numpy as np
import pytest

import seqmeta
from seqmeta.cli import main


def test_help_lists_the_verbs():
    out = subprocess.run([sys.executable, "-m", "seqmeta", "--help"], capture_output=True, text=True, check=True)
    for verb in ("families", "collect", "import-hdf5", "import-minari", "info", "train", "finetune", "eval", "demo"):
        assert verb in out.stdout


def test_help_and_the_light_verbs_do_not_import_torch():
    """`seqmeta --help` starts at once: torch and transformers are imported only by the verbs that use them,
    while `train --help` still lists every option of its config class."""
    probe = (
        "import sys, contextlib, io\n"
        "from seqmeta.cli import main\n"
        "for argv in (['--help'], ['--version'], ['push', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'accelerate', 'datasets') if m in sys.modules))\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    main(['train', '--help'])\n"
        "print('--learning-rate' in out.getvalue(), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]", out
    assert out[1] == "True True", out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"seqmeta {seqmeta.__version__}"


def test_boolean_options_take_a_value_or_none(capsys):
    """`--use-prompt false` (the YAML way), `--no-use-prompt`, `--use-prompt` and no flag (the recipe's value)."""
    from seqmeta.cli import build_parser

    def parsed(*argv):
        return getattr(build_parser(options_of={"train"}).parse_args(["train", *argv]), "use_prompt", "recipe")

    assert parsed("--use-prompt", "false", "--data", "d") is False
    assert parsed("--use-prompt", "True") is True
    assert parsed("--no-use-prompt") is False
    assert parsed("--use-prompt") is True
    assert parsed() == "recipe"
    with pytest.raises(SystemExit):
        parsed("--use-prompt", "maybe")
    assert "--use-prompt takes true or false" in capsys.readouterr().err


def test_rollout_verbs_let_idle_openmp_threads_sleep(monkeypatch):
    """`seqmeta eval` and `collect` set OMP_WAIT_POLICY=PASSIVE (unless the user set it) before torch loads;
    `train` keeps OpenMP's default."""
    for verb, expected in (("eval", "PASSIVE"), ("collect", "PASSIVE"), ("train", None)):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert os.environ.get("OMP_WAIT_POLICY") == expected
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_collect_then_info(tmp_path, capsys):
    out = tmp_path / "pr"
    argv = [
        "collect",
        "--family",
        "point-robot-sparse",
        "--quality",
        "expert,random",
        "--tasks",
        "test",
        "--episodes-per-task",
        "3",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 2 * 5 * 3 * 20 and set(ds.unique("quality")) == {"expert", "random"}
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "expert" in printed and "30 episodes" in printed
    assert "seqmeta collect --family point-robot-sparse" in (out / "README.md").read_text()


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["collect", "--family", "cheetah-speed", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task family 'cheetah-speed'; did you mean 'cheetah-vel'?" in capsys.readouterr().err
    assert main(["collect", "--family", "point-robot", "--tasks", "3,99", "--out", str(tmp_path / "x")]) == 2
    assert "[99] do not exist" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "x").exists()


def test_import_hdf5_verb(tmp_path):
    n = 40
    with h5py.File(tmp_path / "t.hdf5", "w") as f:
        f["observations"] = np.zeros((n, 2), np.float32)
        f["actions"] = np.zeros((n, 2), np.float32)
        f["rewards"] = np.ones(n, np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = np.arange(n) % 20 == 19
    assert (
        main(
            [
                "import-hdf5",
                "--family",
                "point-robot",
                "--file",
                f"3={tmp_path / 't.hdf5'}",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert datasets.load_from_disk(str(tmp_path / "o"))["return_to_go"][0] == 20.0


def test_collect_a_task_list_from_a_json_file(tmp_path, capsys):
    import json

    spec = tmp_path / "far.json"
    spec.write_text(json.dumps({"name": "far", "params": [{"goal": [2.0, 2.0]}, {"goal": [-2.5, 0.5]}], "test": [1]}))
    out = tmp_path / "d"
    argv = ["collect", "--family", "point-robot", "--task-params", str(spec), "--episodes-per-task", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    data = seqmeta.load_trajectories(out)
    assert data.task_set.name == "far" and data.task_set.params[1] == {"goal": [-2.5, 0.5]}
    assert data.task_set.test_indices == (1,) and data.meta.num_episodes == 4
    spec.write_text(json.dumps({"params": [{"goal": [0, 0]}], "test": [3]}))
    assert main([*argv, "--out", str(tmp_path / "e")]) == 2
    assert "test indices among 0..0" in capsys.readouterr().err
