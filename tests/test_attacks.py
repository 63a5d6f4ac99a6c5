"""Files that try to run code or to write outside their folder: seqmeta refuses or ignores them, and
nothing runs (each attack would leave a marker file if it did)."""

import json
import pickle
import shutil

import pytest

import seqmeta
from seqmeta.cli import main
from seqmeta.data.dataset import load_trajectories
from seqmeta.errors import ConfigError, DatasetFormatError


class _Marker:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def model_copy(tiny_trained_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_trained_model, folder)
    return folder


@pytest.mark.reliability("attacks", "refused, files untouched")
@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pkl"])
def test_pickled_weights_are_never_unpickled(model_copy, tmp_path, name):
    marker = tmp_path / "ran"
    (model_copy / "model.safetensors").unlink()
    (model_copy / name).write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(ConfigError, match="has no safetensors weights"):
        seqmeta.load_model(model_copy)
    assert not marker.exists()


@pytest.mark.reliability("attacks", "right result")
def test_remote_code_named_by_a_config_never_runs(model_copy, tmp_path):
    marker = tmp_path / "ran"
    config = json.loads((model_copy / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (model_copy / "config.json").write_text(json.dumps(config))
    (model_copy / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nEvilConfig = EvilModel = None\n")
    model = seqmeta.load_model(model_copy)
    assert type(model).__name__ == "PromptDTModel" and not marker.exists()


@pytest.mark.reliability("attacks", "clear error, nothing written")
@pytest.mark.parametrize("verb", ["train", "finetune", "self-supervise"])
def test_a_recipe_that_would_run_code_is_refused(tmp_path, capsys, verb):
    marker = tmp_path / "ran"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"max_steps: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main([verb, "--config", str(recipe), "--output-dir", str(tmp_path / "out")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err and not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.reliability("attacks", "refused, files untouched")
def test_overwrite_through_a_symbolic_link_is_refused(tmp_path, capsys):
    mine = tmp_path / "my-files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    link = tmp_path / "data"
    link.symlink_to(mine)
    argv = ["collect", "--family", "point-robot", "--episodes-per-task", "2", "--out", str(link), "--overwrite"]
    assert main(argv) == 2
    assert "not a folder seqmeta wrote" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"] and link.is_symlink()


@pytest.mark.reliability("attacks", "clear error, nothing written")
@pytest.mark.parametrize("name", ["../../outside", "/etc/cron.d/x", "a/b", ".hidden"])
def test_a_dataset_whose_quality_names_are_paths_is_refused_on_load(point_robot_dataset, tmp_path, name):
    copy = tmp_path / "copy"
    shutil.copytree(point_robot_dataset.path, copy)
    meta = json.loads((copy / "seqmeta.json").read_text())
    meta["qualities"] = {name: next(iter(meta["qualities"].values()))}
    (copy / "seqmeta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="are not plain names"):
        load_trajectories(copy)
