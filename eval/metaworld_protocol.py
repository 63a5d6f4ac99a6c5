"""Meta-World's own meta-learning evaluation of a seqmeta model: a second view beside ``seqmeta eval``.

    python eval/metaworld_protocol.py --model runs/ml1-push/prompt-seed0/model --data data/metaworld-ml1-push

Runs ``metaworld.evaluation.metalearning_evaluation`` on Meta-World's own test envs
(``gym.make_vec("Meta-World/ML1-test", env_name=<class>, seed=1337)`` for an ML1 family, ``ML10-test``
for ``metaworld-ml10``): in each evaluation the agent first acts ``--adaptation-episodes`` episodes in
every env, receiving rewards (its own exploration: the first episode unprompted, each later one
prompted with the episodes before it), then is evaluated for ``--evaluation-episodes`` episodes per
task, prompted with all its adaptation episodes. Meta-World's evaluation loop hands the agent no
rewards and ends an episode at its first success, so the agent labels each evaluation step's reward
with its own reward head (``seqmeta.selfsupervise.RewardLabeler``, as seqmeta's self-supervision does)
and every env runs its own agent (episodes restart at different steps).

Read its figures knowing how Meta-World 3.1.1 counts them: per task *class* it takes the first
``--evaluation-episodes`` episodes to end among all envs of the class, and an episode ends at its first
success, so quick successes come first and are counted more often than slow failures (with ML1's one
class and Meta-World's default of 3, the first 3 episodes of the whole batch). The default here counts
as many episodes as there are envs; seqmeta's own evaluator (``seqmeta eval``) runs every episode to
the horizon and is the figure to compare models by.

Printed beside it, from the same run: the same model with no prompt (its adaptation episodes ignored).
The results go to ``<output-dir>/metalearning_evaluation.json``. Meta-World's ML1 test envs draw their
goals with the benchmark seed (1337, the seed of seqmeta's ML1 families, so the goals are the family's
held-out goals); ``--meta-batch-size`` must divide the 50 goals (ML1) or 40 goals x 5 classes (ML10).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from seqmeta.agent import Agent
from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError, SeqmetaError
from seqmeta.io import atomic_write_json
from seqmeta.prompts import EpisodePool, cut_prompts, empty_prompt
from seqmeta.selfsupervise import RewardLabeler

BENCHMARK_SEED = 1337  # the seed seqmeta's Meta-World families draw their tasks with


class MetaLearner:
    """A seqmeta model as Meta-World's ``MetaLearningAgent`` (``init``, ``adapt_action``, ``step``,
    ``adapt``) and evaluation ``Agent`` (``reset``, ``eval_action``); ``prompted=False``: no prompt ever."""

    def __init__(self, model, num_envs: int, target_return: float | str, prompted: bool = True, seed: int = 0):
        """``target_return``: one return every env aims for, or ``"model"`` (the value head's)."""
        if prompted and not model.config.use_prompt:
            raise ConfigError("this model takes no prompt (config.use_prompt=False): run it with prompted=False")
        self.model, self.n, self.target, self.prompted, self.seed = model, num_envs, target_return, prompted, seed
        self.eval_prompts = None
        self.actors: list = [None] * num_envs  # evaluation: each env's agent, reward labeler, last label
        self.labelers: list = [None] * num_envs
        self.labels: list = [None] * num_envs

    # ---- adaptation: all envs act together, episodes end together (fixed horizon) ----------------

    def init(self) -> None:
        self.history: list[Episodes] = []
        self.eval_prompts = None
        self._start_adaptation_episode()

    def _prompts(self) -> dict[str, np.ndarray] | None:
        if not (self.prompted and self.history):
            return None
        pool = EpisodePool(Episodes.concatenate(self.history))  # task_index = env slot
        return cut_prompts(self.model.config, pool, np.arange(self.n), self.seed + len(self.history))

    def _start_adaptation_episode(self) -> None:
        self.agent = Agent(self.model, self.n, prompts=self._prompts(), target_returns=self.target)
        self.agent.reset()
        self.steps: dict[str, list[np.ndarray]] = {"observations": [], "actions": [], "rewards": []}
        self.reward = None

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict]:
        return self.agent.act(observations, self.reward), {}

    def step(self, timestep) -> None:
        for key, value in zip(("observations", "actions", "rewards"), timestep[:3], strict=True):
            self.steps[key].append(np.asarray(value, np.float32))
        self.reward = np.asarray(timestep.reward, np.float64)
        done = np.logical_or(timestep.terminated, timestep.truncated)
        if not done.any():
            return
        if not done.all():
            raise ConfigError("adaptation episodes ended at different steps: run the envs without terminate_on_success")
        length = len(self.steps["rewards"])
        per_env = {k: np.stack(v, 1) for k, v in self.steps.items()}  # (N, T, ...)
        last = np.zeros((self.n, length), bool)
        last[:, -1] = True
        self.history.append(
            Episodes(
                observations=per_env["observations"].reshape(self.n * length, -1),
                actions=per_env["actions"].reshape(self.n * length, -1),
                rewards=per_env["rewards"].reshape(-1),
                terminated=(last & np.asarray(timestep.terminated, bool)[:, None]).reshape(-1),
                truncated=(last & np.asarray(timestep.truncated, bool)[:, None]).reshape(-1),
                lengths=np.full(self.n, length, np.int64),
                task_index=np.arange(self.n, dtype=np.int64),
                quality=np.full(self.n, "own", dtype=object),
            )
        )
        self._start_adaptation_episode()

    def adapt(self) -> None:
        self.eval_prompts = self._prompts() if self.prompted else empty_prompt(self.model.config, self.n)

    # ---- evaluation: one agent per env, rewards from the reward head --------------------------------

    def reset(self, env_mask: np.ndarray) -> None:
        prompts = self.eval_prompts if self.eval_prompts is not None else empty_prompt(self.model.config, self.n)
        for i in np.flatnonzero(env_mask):
            own = {k: v[i : i + 1] for k, v in prompts.items() if k != "demo_return"}
            prompt = own if self.model.config.use_prompt else None
            self.actors[i] = Agent(self.model, 1, prompts=prompt, target_returns=self.target)
            self.actors[i].reset()
            self.labelers[i] = RewardLabeler(self.model, own)
            self.labels[i] = None

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        actions = []
        for i in range(self.n):
            obs = np.asarray(observations[i : i + 1], np.float32)
            action = self.actors[i].act(obs, self.labels[i])
            self.labels[i] = self.labelers[i].label(obs, action)
            actions.append(action)
        return np.concatenate(actions)


def make_test_envs(family_name: str, meta_batch_size: int, seed: int):
    """Meta-World's own test envs of the family's benchmark (goals hidden, as seqmeta's envs)."""
    import gymnasium as gym

    from seqmeta.tasks.metaworld import metaworld

    if not (family_name.startswith("metaworld-ml1-") or family_name == "metaworld-ml10"):
        raise ConfigError(f"{family_name} is no Meta-World family: give a model trained on metaworld-ml1-* or -ml10")
    metaworld()  # registers Meta-World's envs, on the installed MuJoCo
    classes, goals = (1, 50) if family_name.startswith("metaworld-ml1-") else (5, 40)
    if meta_batch_size < 1 or meta_batch_size % classes or goals % (meta_batch_size // classes):
        raise ConfigError(
            f"--meta-batch-size {meta_batch_size} does not split {family_name}'s test goals ({classes} class(es) x "
            f"{goals} goals) evenly over the envs: give {classes} x a divisor of {goals}, e.g. {classes * 10}"
        )
    if family_name.startswith("metaworld-ml1-"):
        env_name = family_name.removeprefix("metaworld-ml1-") + "-v3"
        return gym.make_vec("Meta-World/ML1-test", env_name=env_name, seed=seed, meta_batch_size=meta_batch_size)
    # ML10's test split needs 40 goals per class
    return gym.make_vec("Meta-World/ML10-test", seed=seed, meta_batch_size=meta_batch_size, total_tasks_per_cls=40)


def run(model, family_name: str, args, target) -> dict[str, dict]:
    from seqmeta.tasks.metaworld import metaworld

    metaworld()
    from metaworld.evaluation import metalearning_evaluation

    results = {}
    for name, prompted in (("own-adaptation", True), ("no-prompt", False)):
        if prompted and not model.config.use_prompt:
            continue
        envs = make_test_envs(family_name, args.meta_batch_size, args.benchmark_seed)
        started = time.perf_counter()
        success, mean_return, per_class = metalearning_evaluation(
            MetaLearner(model, envs.num_envs, target, prompted, seed=args.seed),
            envs,
            num_evals=args.num_evals,
            adaptation_episodes=args.adaptation_episodes,
            evaluation_episodes=args.evaluation_episodes,
        )
        envs.close()
        results[name] = {
            "success_rate": float(success),
            "mean_return": float(mean_return),
            "success_rate_per_class": {k: float(v) for k, v in sorted(per_class.items())},
            "wall_seconds": time.perf_counter() - started,
        }
        wall = results[name]["wall_seconds"]
        print(f"{name:<15} success {100 * success:5.1f}%  mean return {mean_return:8.1f}  ({wall:.0f} s)")
        for cls, rate in sorted(per_class.items()):
            print(f"{'':<15} {cls}: {100 * rate:5.1f}%")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder or shipped name, trained on a Meta-World family")
    parser.add_argument("--data", default=None, help="its training data (the fixed target: its best return)")
    parser.add_argument("--target-return", default="fixed", help="fixed (needs --data), model, or a number")
    parser.add_argument("--meta-batch-size", type=int, default=50, help="envs of the test vector env")
    parser.add_argument("--num-evals", type=int, default=1)
    parser.add_argument("--adaptation-episodes", type=int, default=3)
    parser.add_argument(
        "--evaluation-episodes", type=int, default=0, help="episodes counted per task class (0: one per env)"
    )
    parser.add_argument("--benchmark-seed", type=int, default=BENCHMARK_SEED)
    parser.add_argument("--seed", type=int, default=2026, help="seed of the prompt cuts")
    parser.add_argument("--output-dir", default="outputs/metaworld_protocol")
    args = parser.parse_args()
    for flag in ("num_evals", "adaptation_episodes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.evaluation_episodes < 0:
        parser.error(f"--evaluation-episodes must be 0 (one per env) or more, got {args.evaluation_episodes}")
    args.evaluation_episodes = args.evaluation_episodes or args.meta_batch_size
    if args.target_return not in ("fixed", "model"):
        try:
            float(args.target_return)
        except ValueError:
            parser.error(f"--target-return must be fixed, model or a number, got {args.target_return!r}")
    try:
        evaluate_model(args)
    except SeqmetaError as e:
        raise SystemExit(f"error: {e}") from None


def evaluate_model(args) -> None:
    from seqmeta.models import load_model

    model = load_model(args.model)
    family_name = model.config.family
    if args.target_return == "fixed":
        if args.data is None:
            raise SystemExit("--target-return fixed needs --data (the training data); or give model or a number")
        from seqmeta.data import load_trajectories

        target: float | str = float(load_trajectories(args.data).best_training_return())
    elif args.target_return == "model":
        target = "model"
    else:
        target = float(args.target_return)
    print(
        f"{family_name}: Meta-World's metalearning_evaluation, {args.num_evals} evaluation(s) x {args.meta_batch_size} "
        f"envs, {args.adaptation_episodes} adaptation + {args.evaluation_episodes} evaluation episodes, target {target}"
    )
    results = run(model, family_name, args, target)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": str(args.model), "family": family_name, "args": vars(args), "results": results}
    atomic_write_json(out / "metalearning_evaluation.json", record)
    print(f"wrote {out / 'metalearning_evaluation.json'}")


if __name__ == "__main__":
    main()
