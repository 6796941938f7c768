import pytest
import torch

from specialist.base_models import BaseModelRef, load_model, load_tokenizer
from specialist.config import LoraSettings, OptimSettings
from specialist.prompt_format import TaskPrompt
from training.batching import collate, encode_examples
from training.loop import plan_steps, token_loss_sum, train_loop
from training.lora import attach_lora
from training.mixture import TrainExample


@pytest.fixture
def tiny(tiny_model_dir):
    ref = BaseModelRef(id="tiny", path=tiny_model_dir, content_sha256="x")
    tok = load_tokenizer(ref)
    model = attach_lora(load_model(ref, torch.device("cpu"), torch.float32), LoraSettings(lora_dropout=0.0), seed=0)
    texts = [
        ("lovely film", "POS"),
        ("a really dull and boring story", "NEG"),
        ("fine", "POS"),
        ("the acting was awful", "NEG"),
    ]
    examples = [TrainExample(TaskPrompt(definition="Classify."), i, o, "t") for i, o in texts]
    encoded, _ = encode_examples(tok, examples, 256)
    return model, tok, encoded


def test_response_only_loss_equals_the_models_own_loss(tiny):
    model, tok, encoded = tiny
    batch = collate(encoded, tok.pad_token_id)
    ours, n = token_loss_sum(model, batch)
    reference = model(**batch).loss  # HF: mean over non-ignored shifted labels
    assert n == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(ours / n, reference, rtol=1e-5, atol=1e-6)


def test_accumulated_gradient_equals_full_batch_gradient(tiny):
    model, tok, encoded = tiny
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(micro_batches):
        model.zero_grad()
        total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro_batches)
        for b in micro_batches:
            loss_sum, _ = token_loss_sum(model, b)
            (loss_sum / total).backward()
        return [p.grad.clone() for p in params]

    # Uneven micro-batches: 1 long example vs 3 short ones.
    full = grads([collate(encoded, tok.pad_token_id)])
    split = grads([collate(encoded[1:2], tok.pad_token_id), collate(encoded[0:1] + encoded[2:], tok.pad_token_id)])
    for a, b in zip(full, split):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_training_changes_lora_weights_only(tiny, tmp_path):
    model, tok, encoded = tiny
    base_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert lora_before and all("lora_" in n for n in lora_before)
    opt = OptimSettings(batch_size=2, max_steps=3, learning_rate=1e-2)
    state = train_loop(
        model,
        encoded,
        opt,
        plan_steps(len(encoded), opt, None),
        seed=0,
        pad_id=tok.pad_token_id,
        device=torch.device("cpu"),
        work_dir=tmp_path,
        checkpoint_every=100,
        resume=False,
        progress=False,
    )
    assert state.step == 3 and len(state.losses) == 3 and state.tokens > 0
    for n, p in model.named_parameters():
        if n in base_before:
            assert torch.equal(p, base_before[n]), n
    lora_b = [n for n in lora_before if "lora_B" in n]  # B starts at zero, so any update shows
    assert all(not torch.equal(dict(model.named_parameters())[n], lora_before[n]) for n in lora_b)


def test_plan_counts_epochs_with_gradient_accumulation():
    opt = OptimSettings(batch_size=8, grad_accum=4)
    plan = plan_steps(64, opt, epochs=2)  # 8 micro-batches per epoch, 4 per step
    assert plan.total_steps == 4 and plan.epochs == 2.0
