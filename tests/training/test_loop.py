import pytest
import torch

from specialist.base_models import BaseModelRef, load_model, load_tokenizer
from specialist.config import LoraSettings, OptimSettings
from specialist.prompt_format import Example, TaskPrompt
from training.batching import collate, collate_shared_prefixes, encode_examples
from training.loop import plan_steps, shares_prefixes, token_loss_sum, train_loop
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
    labels = torch.full_like(batch.input_ids, -100)  # HF's convention: unshifted labels, mean over the rest
    for row, ex in enumerate(encoded):
        labels[row, ex.prompt_len : len(ex)] = torch.tensor(ex.input_ids[ex.prompt_len :])
    reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
    assert n == int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(ours / n, reference, rtol=1e-5, atol=1e-6)


def test_shared_prefix_packing_gives_the_padded_loss_and_gradients(tiny):
    model, tok, _ = tiny
    prompt = TaskPrompt(
        definition="Classify the sentiment of the movie review as POS or NEG.",
        examples=(Example(input="a wonderful film", output="POS"), Example(input="dull", output="NEG")),
    )
    texts = [("lovely film", "POS"), ("a really dull and boring story", "NEG"), ("fine", "POS")]
    examples = [TrainExample(prompt, i, o, "t") for i, o in texts]
    examples.append(TrainExample(TaskPrompt(definition="Repeat."), "the acting was awful", "awful", "t"))
    encoded, _ = encode_examples(tok, examples, 256)
    assert shares_prefixes(model)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(batch):
        model.zero_grad()
        loss, n = token_loss_sum(model, batch)
        (loss / n).backward()
        return loss.detach(), n, [p.grad.clone() for p in params]

    padded, packed = collate(encoded, tok.pad_token_id), collate_shared_prefixes(encoded, tok.pad_token_id)
    assert packed.input_ids.shape[0] == 2 and packed.positions < 0.8 * padded.positions  # 3 rows share, 1 alone
    (loss_a, n_a, grads_a), (loss_b, n_b, grads_b) = loss_and_grads(padded), loss_and_grads(packed)
    assert n_a == n_b
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_a, grads_b):  # summation order differs: 1e-4 of each tensor's largest entry
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    assert any(a.abs().max() > 0 for a in grads_a)


def test_accumulated_gradient_equals_full_batch_gradient(tiny):
    model, tok, encoded = tiny
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(micro_batches):
        model.zero_grad()
        total = sum(int((b.targets != -100).sum()) for b in micro_batches)
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
