"""The tiny model with its tokenizer, and rendered toy-task prompts, for the inference tests."""

import pytest

from tests.conftest import TOY_TASK


@pytest.fixture
def base_and_tok(tiny_model_dir):
    from specialist.base_models import load_tokenizer, resolve_base_model

    base = resolve_base_model(str(tiny_model_dir))
    return base, load_tokenizer(base, padding_side="left")


def toy_prompts(task_dir, n=6) -> list[str]:
    """The toy task's first `n` held-out instances, rendered with its prompt."""
    from eval.benchmarks import task_benchmark

    bench = task_benchmark(task_dir, TOY_TASK, limit=n)
    return [bench.prompt.render(i.input) for i in bench.instances]
