import json

from seqmeta.cli import main
from seqmeta.results import load_results


def test_demo_pipeline_end_to_end_at_small_scale(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output-dir", str(out), "--scale", "0.01"]) == 0
    printed = capsys.readouterr().out
    assert "normalized score" in printed and "point-robot" in printed and "cheetah-vel" in printed
    for family in ("point-robot", "cheetah-vel"):
        for kind, settings in (("prompt-dt", [0, 1, 2, 4]), ("no-prompt", [0])):
            model = out / "models" / f"{family}-{kind}" / "model"
            results = load_results(model / "eval_results.json")
            assert [s["prompt_trajectories"] for s in results["settings"]] == settings
            assert results["protocol"]["tasks"] == "test" and results["family"] == family
            for name in ("adaptation_curve.png", "per_task.png", "training_curve.png"):
                assert (model / name).exists()
            assert json.loads((model / "config.json").read_text())["use_prompt"] == (kind == "prompt-dt")
    # A second run finds every stage done and prints the same table.
    model = out / "models" / "point-robot-prompt-dt" / "model"
    before = {p.name: p.stat().st_mtime_ns for p in model.iterdir()}
    assert main(["demo", "--output-dir", str(out), "--scale", "0.01"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in model.iterdir()} == before
    assert (
        capsys.readouterr().out.split("demo took")[1].split("\n", 1)[1]
        == printed.split("demo took")[1].split("\n", 1)[1]
    )


def test_the_demos_cheetah_model_is_the_small_recipe():

    from seqmeta.configs import load_config
    from seqmeta.demo import DEMO_FAMILIES
    from seqmeta.trainer import TrainConfig

    recipe = load_config(TrainConfig, "cheetah_vel_small")
    spec = next(f for f in DEMO_FAMILIES if f.name == "cheetah-vel")
    assert {k: getattr(recipe, k) for k in spec.train} == spec.train
