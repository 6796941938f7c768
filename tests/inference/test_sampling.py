"""Choosing the next token: seeded rows draw the same whatever their company, tiny temperatures stay finite."""

import torch

from inference.decoder import Decoder, DecodeRow
from inference.sampling import sample
from specialist.base_models import load_model
from tests.inference.conftest import toy_prompts as _prompts


def test_seeded_sampling_ignores_batch_company(base_and_tok, task_dir):
    base, tok = base_and_tok
    decoder = Decoder(load_model(base), tok)
    ids = tok(_prompts(task_dir, 1)[0])["input_ids"]

    def sampled(company: int):
        rows = [DecodeRow(ids, 6, temperature=1.5, generator=torch.Generator().manual_seed(7))]
        rows += [DecodeRow(ids, 6, temperature=1.5) for _ in range(company)]
        return decoder.decode(rows)[0]

    assert sampled(0) == sampled(3)


def test_a_tiny_temperature_is_greedy_not_nan():
    logits = torch.tensor([1.0, 3.0, 2.0])
    assert all(sample(logits, 1e-6, 1.0, torch.Generator().manual_seed(s)) == 1 for s in range(5))


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    drawn = {sample(logits, 1.0, 0.5, torch.Generator().manual_seed(s)) for s in range(50)}
    assert drawn == {0}  # the most likely token alone reaches top_p
    drawn = {sample(logits, 1.0, 0.8, torch.Generator().manual_seed(s)) for s in range(200)}
    assert drawn == {0, 1}


def test_penalties_reshape_only_the_tokens_they_name():
    from inference.sampling import choose, score

    logits = torch.tensor([[2.0, 1.9, -1.0, 0.5]])
    row = DecodeRow([3], 4)
    assert choose(logits, [row], [[0]]) == [0]  # no penalty: greedy takes token 0
    # OpenAI: presence subtracts once, frequency once per appearance, from tokens already in the output.
    assert choose(logits, [DecodeRow([3], 4, presence_penalty=0.2)], [[0]]) == [1]
    assert choose(logits, [DecodeRow([3], 4, frequency_penalty=0.06)], [[0, 0]]) == [1]  # 2 - 0.12 < 1.9
    assert choose(logits, [DecodeRow([3], 4, frequency_penalty=0.06)], [[0]]) == [0]  # 2 - 0.06 > 1.9
    # TGI / transformers: tokens of the prompt or output, positive logits divided, negative multiplied.
    assert choose(torch.tensor([[2.0, 1.9, -1.0, 2.1]]), [DecodeRow([3], 4, repetition_penalty=1.2)], [[]]) == [0]
    # Scores are the model's own log-softmax, whatever the penalties did.
    scored = score(logits, [DecodeRow([3], 4, top_logprobs=2)], [1])[0]
    expected = torch.log_softmax(logits[0], -1)
    assert abs(scored.logprob - expected[1].item()) < 1e-6
    assert [i for i, _ in scored.top] == [0, 1]


def test_top_k_samples_only_among_the_k_likeliest():
    logits = torch.tensor([3.0, 2.9, 2.8, -5.0, -5.0])
    draws = {sample(logits, 5.0, 1.0, torch.Generator().manual_seed(s), top_k=2) for s in range(60)}
    assert draws == {0, 1}


def test_typical_p_keeps_the_tokens_whose_surprise_is_closest_to_the_entropy():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1]))  # entropy 0.80 nats; surprises 0.36, 1.61, 2.30
    draw = [sample(logits, 1.0, 1.0, torch.Generator().manual_seed(s), typical_p=0.8) for s in range(100)]
    assert set(draw) == {0, 1}
    assert {sample(logits, 1.0, 1.0, torch.Generator().manual_seed(s), typical_p=0.5) for s in range(30)} == {0}
