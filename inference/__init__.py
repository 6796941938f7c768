"""The inference engine that evaluation (eval/) and serving (service/) both generate with.

- `multi_lora`: many LoRA adapters on one base model, each applied to its own rows of a batch;
- `decoder`: the decoding loop (continuous batching), tying together `kv_cache` (keys/values that grow in
  place), `prefix_cache` (each task's shared prompt prefix computed once per adapter), `prefill` (planning
  and running prefill passes, merging batches), `sampling` (greedy, temperature, top-k, top-p, penalties,
  log-probabilities) and `constraints` (grammars the output must match: JSON schemas, regexes);
- `adapter_cache`: which adapters are resident (validated loads, LRU eviction, deferred unloads);
- `text_stream`: a generation's text as it grows (incremental detokenising, stop strings, the frame's stop
  rule), shared by every serving backend.

Depends only on `specialist` (the shared vocabulary); never on eval/ or service/.
"""
