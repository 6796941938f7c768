"""Score several adapters and the bare base model on benchmarks in one pass over the data.

Requests of every model for a task go through `generate` together, so rows of one batch belong to
different adapters and the task's shared prompt prefix is computed once per adapter: comparing candidates
costs little more than one model. Every model's generations end by the prompt format's stop rule. Label tasks
also score their majority label (`MAJORITY`), a baseline with no generation at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval.benchmarks import METRICS, BenchInstance, Benchmark
from eval.generate import GenerationRequest, generate, load_decoder
from eval.intervals import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, Interval, bootstrap
from eval.metrics import instance_scores, mean_score
from inference.multi_lora import BASE_ADAPTER
from specialist.adapters import AdapterManifest, check_adapter
from specialist.adapters.decision import BASE, MAJORITY
from specialist.base_models import BaseModelRef, load_model, load_tokenizer, pick_device
from specialist.errors import SpecialistError
from specialist.prompt_format import TaskPrompt, fit_prompt, stop_rule

MAX_INPUT_TOKENS = 1024
MAX_NEW_TOKENS_CAP = 128


@dataclass
class EvalRun:
    """model -> task -> {'exact_match', 'rougeL', 'score'}; 'score' is the task's primary metric.

    `instance_scores` holds the same per instance (model -> task -> metric -> scores), which intervals resample.
    The majority-label baseline is scored under `MAJORITY` for the label tasks only and is not in `models`."""

    base_model: str
    models: list[str]
    benchmarks: list[Benchmark]
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    predictions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    instance_scores: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    prompts_truncated: int = 0
    stop_rule: dict = field(default_factory=stop_rule)

    def mean(self, model: str, metric: str = "score", tasks: list[str] | None = None) -> float:
        """Mean over tasks (all benchmarks unless `tasks` is given), the aggregate a multi-task benchmark reports."""
        names = tasks if tasks is not None else [b.name for b in self.benchmarks]
        values = [self.scores[model][t][metric] for t in names]
        return round(sum(values) / len(values), 4)

    @property
    def label_tasks(self) -> list[str]:
        """Tasks with a majority-label baseline."""
        return [b.name for b in self.benchmarks if b.name in self.scores.get(MAJORITY, {})]

    def record(self, model: str, bench: Benchmark, predictions: list[str]) -> None:
        """Score one model's predictions on one benchmark, per instance and in aggregate."""
        per_instance = instance_scores(predictions, [i.references for i in bench.instances])
        per_instance["score"] = per_instance[bench.metric]
        self.instance_scores.setdefault(model, {})[bench.name] = per_instance
        self.scores.setdefault(model, {})[bench.name] = {m: mean_score(v) for m, v in per_instance.items()}
        self.predictions.setdefault(model, {})[bench.name] = predictions

    def interval(
        self,
        model: str,
        reference: str | None = None,
        *,
        tasks: list[str] | None = None,
        metric: str = "score",
        confidence: float = DEFAULT_CONFIDENCE,
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
    ) -> Interval:
        """Bootstrap interval of `model`'s mean over tasks, or of `model - reference` (paired by instance)."""
        names = tasks if tasks is not None else [b.name for b in self.benchmarks]
        side = lambda m: [{t: self.instance_scores[m][t][metric] for t in names}]  # noqa: E731
        return bootstrap(
            side(model), side(reference) if reference else None, confidence=confidence, resamples=resamples, seed=seed
        )


def prompt_for(manifest: AdapterManifest | None, bench: Benchmark, inst: BenchInstance) -> TaskPrompt:
    """The adapter's own stored prompt for this task if it has one, else the benchmark's."""
    if inst.definition is not None:
        return TaskPrompt(definition=inst.definition, num_examples=0)
    if manifest is not None and bench.name in manifest.tasks:
        return manifest.tasks[bench.name]
    return bench.prompt


def max_new_tokens_for(tokenizer, bench: Benchmark) -> int:
    """Room for the longest reference plus slack, bounded: short labels decode in a few steps."""
    longest = max(
        len(tokenizer(" " + r, add_special_tokens=False)["input_ids"]) for i in bench.instances for r in i.references
    )
    return max(4, min(MAX_NEW_TOKENS_CAP, int(longest * 1.5) + 2))


def run_eval(
    base: BaseModelRef,
    adapters: dict[str, Path],
    benchmarks: list[Benchmark],
    include_base: bool = True,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> EvalRun:
    if not adapters and not include_base:
        raise SpecialistError("nothing to evaluate", "pass --adapter DIR and/or --base")
    for reserved, what in ((BASE, "the base model"), (MAJORITY, "the majority-label baseline")):
        if reserved in adapters:
            raise SpecialistError(f"{reserved!r} is reserved for {what}", "rename that adapter (--adapter NAME=DIR)")
    manifests = {
        name: check_adapter(path, base.content_sha256, base.id).require(None) for name, path in adapters.items()
    }
    torch_device, dtype = pick_device(device)
    tokenizer = load_tokenizer(base, padding_side="left")
    slots = {name: f"adapter{i}" for i, name in enumerate(adapters)}  # results keep the user's names
    decoder = load_decoder(load_model(base, torch_device, dtype), tokenizer, {slots[n]: p for n, p in adapters.items()})
    names = ([BASE] if include_base else []) + list(adapters)
    run = EvalRun(base_model=base.id, models=names, benchmarks=benchmarks)
    count = lambda s: len(tokenizer(s)["input_ids"])  # noqa: E731

    for bench in benchmarks:
        requests = []
        for name in names:
            for inst in bench.instances:
                prompt = prompt_for(manifests.get(name), bench, inst)
                text = fit_prompt(prompt, inst.input, count, MAX_INPUT_TOKENS)
                if text is None:  # even without demonstrations: keep the tail of the input
                    run.prompts_truncated += 1
                    ids = tokenizer(prompt.render(inst.input, 0))["input_ids"][-MAX_INPUT_TOKENS:]
                    text = tokenizer.decode(ids)
                requests.append(GenerationRequest(text, slots.get(name, BASE_ADAPTER)))
        outputs = generate(decoder, requests, max_new_tokens_for(tokenizer, bench), batch_size, progress)
        n = len(bench.instances)
        for k, name in enumerate(names):
            run.record(name, bench, outputs[k * n : (k + 1) * n])
        if bench.majority is not None:  # scored like a model that always answers the label
            run.record(MAJORITY, bench, [bench.majority.label] * n)
    return run


__all__ = ["METRICS", "EvalRun", "run_eval"]
