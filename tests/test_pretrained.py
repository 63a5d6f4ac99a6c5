"""The models that ship in the package: their results agree with the README's families (or Meta-World) table,
their cards with what the card code renders today, and they load by name (an unknown name is refused with the
list)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import seqmeta
from seqmeta.errors import ConfigError
from seqmeta.hub import render_model_card
from seqmeta.pretrained import list_pretrained
from seqmeta.results import load_results

RESULTS = Path(__file__).resolve().parents[1] / "eval" / "results"
SHIPPED = list_pretrained()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_model_has_the_results_of_the_families_table(name):
    """...or of the Meta-World table, for a Meta-World family (the README's two tables of shipped models)."""
    folder = SHIPPED[name]
    family = json.loads((folder / "config.json").read_text())["family"]
    table = RESULTS / ("metaworld.json" if family.startswith("metaworld-") else "families.json")
    offline = load_results(folder / "eval" / "offline" / "eval_results.json")
    own = load_results(folder / "eval" / "own" / "eval_results.json")
    seed = offline["protocol"]["seed"]
    assert own["protocol"]["seed"] == seed
    by_setting = {
        r["setting"]: r["value"]
        for r in json.loads(table.read_text())
        if r["family"] == family and r["train_seed"] == 0 and r["eval_seed"] == seed and r["metric"] == "normalized"
    }
    offline_scores = {s["prompt_trajectories"]: s["normalized"] for s in offline["settings"]}
    own_scores = {s["prompt_trajectories"]: s["normalized"] for s in own["settings"]}
    assert by_setting["demo-1"] == pytest.approx(offline_scores[1])
    assert by_setting["no-prompt"] == pytest.approx(offline_scores[0])
    assert by_setting["own-rounds-1-3"] == pytest.approx((own_scores[1] + own_scores[2] + own_scores[3]) / 3)
    # The evaluation's data is the folder's demos/ (the same episodes).
    demos = seqmeta.load_trajectories(folder / "demos")
    assert demos.meta.family == family and set(demos.meta.qualities) == {"expert"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_card_is_what_the_card_code_renders(name):
    assert (SHIPPED[name] / "README.md").read_text() == str(render_model_card(SHIPPED[name], name))


def test_shipped_models_load_by_name_and_an_unknown_name_lists_them():
    assert SHIPPED, "no model ships in seqmeta/pretrained"
    name = sorted(SHIPPED)[0]
    model = seqmeta.load_model(name)
    assert Path(model.name_or_path) == SHIPPED[name]
    with pytest.raises(ConfigError, match=rf"no shipped model of that name \(shipped: .*{name}"):
        seqmeta.load_model("cheetah-vell")
    with pytest.raises(ConfigError, match=name):
        seqmeta.pretrained_path("cheetah-vell")


def test_a_shipped_models_results_are_measured_again_from_its_own_demos():
    """What the card says is what a user measures: the evaluation again, from the shipped demos (the
    Point-Robot model: the quickest to evaluate)."""
    import dataclasses

    from seqmeta.evaluation import EvalProtocol, evaluate

    point_robot = [
        n for n, f in SHIPPED.items() if json.loads((f / "config.json").read_text())["family"] == "point-robot"
    ]
    assert point_robot, "no shipped Point-Robot model"
    name = point_robot[0]
    folder = SHIPPED[name]
    shipped = load_results(folder / "eval" / "offline" / "eval_results.json")
    fields = {f.name for f in dataclasses.fields(EvalProtocol)}
    protocol = EvalProtocol(
        **({k: v for k, v in shipped["protocol"].items() if k in fields} | {"data": str(folder / "demos")})
    )
    again = evaluate(seqmeta.load_model(name), protocol, progress=False)
    for ours, theirs in zip(again["settings"], shipped["settings"], strict=True):
        assert ours["mean_return"] == pytest.approx(theirs["mean_return"], rel=1e-6)
