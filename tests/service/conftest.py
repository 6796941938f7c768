"""A registry with two routed tiny adapters, an in-process service over it, and what an adapter alone answers."""

import pytest

from tests.specialist.test_registry import _gated


@pytest.fixture
def served_home(tmp_path, tiny_adapters):
    from specialist.adapters import Registry

    home = tmp_path / "home"
    registry = Registry(home)
    registry.add(_gated(tiny_adapters["alpha"], tmp_path / "alpha"), "sentiment")
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "beta"), "sentiment-mixed")
    return home


@pytest.fixture
def service(served_home, tiny_model_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from service.app import ServiceState, create_app
    from service.config import ServeConfig

    monkeypatch.setenv("SPECIALIST_ADMIN_TOKEN", "s3cret")
    state = ServiceState(
        ServeConfig(base_model=str(tiny_model_dir), max_wait_ms=20, poll_seconds=0.2), home=served_home
    )
    with TestClient(create_app(state)) as client:
        client.state = state
        yield client
    state.close()


def _alone(client, task, text, max_new_tokens=6):
    """What the task's adapter alone produces: peft's own PeftModel.generate, one row, no batching, no cache."""
    import torch
    from peft import PeftModel

    from specialist.base_models import load_model, load_tokenizer

    state = client.state
    served = state.router.resolve(task)
    tok = load_tokenizer(state.base)
    model = PeftModel.from_pretrained(load_model(state.base, torch.device("cpu"), torch.float32), served.path).eval()
    ids = tok(served.prompt.render(text), return_tensors="pt")["input_ids"]
    out = model.generate(
        input_ids=ids,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )[0, ids.shape[1] :]
    return tok.decode(out, skip_special_tokens=True).strip()
