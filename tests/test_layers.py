"""The package's imports run one way: no import circle inside seqmeta/, function-level imports included."""

import ast
from pathlib import Path

import seqmeta

ROOT = Path(seqmeta.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def ignoring_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package __init__ files re-export their submodules; an edge into a package's own __init__ from inside
    it is not a layer violation, so those are dropped."""
    return {m: {t for t in ts if not (m.startswith(t + ".") or t == "seqmeta")} for m, ts in graph.items()}


def test_no_import_circle():
    cycle = find_cycle(ignoring_packages(import_graph()))
    assert cycle is None, " -> ".join(cycle)


def test_models_know_nothing_of_agents_rollouts_hub_or_plots():
    graph = import_graph()
    above = {
        "seqmeta.agent",
        "seqmeta.rollout",
        "seqmeta.hub",
        "seqmeta.plots",
        "seqmeta.evaluation",
        "seqmeta.trainer",
    }
    for module, targets in graph.items():
        if module.startswith("seqmeta.models"):
            assert not targets & above, (module, targets & above)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
