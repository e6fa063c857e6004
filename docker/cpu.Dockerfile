# CPU targets (cpu, cpu-int8): ONNX Runtime. No PyTorch: the host exports the ONNX into the
# bind-mounted run folder; the container converts, infers and evaluates.
# Hosts with no image registry: `python -m toolkit base-image`, then build with
# --base-image centerface-toolkit/base:bookworm (Debian's Python 3.11, the same as this default).
# Ray is in the image so it can join a cluster as a worker for `run --engine ray` (README):
#   docker run --network host -e RAY_AUTH_TOKEN="$(ray get-auth-token)" centerface-toolkit/cpu:<version> \
#       ray start --address=<head>:6379 --block
# Ray joins nodes of the same Python minor version (Debian's 3.11.2 here, the head's 3.11.x).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TOOLKIT_VERSION=dev
ARG TARGET=cpu
ARG INDEX_URL=
ARG VENV_FLAGS=
ARG EXTRA_PACKAGES="ray==2.60.0"
LABEL org.opencontainers.image.title="centerface-toolkit" \
      org.opencontainers.image.version="${TOOLKIT_VERSION}" \
      io.centerface-toolkit.target="${TARGET}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/centerface-toolkit \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    MPLCONFIGDIR=/tmp/matplotlib \
    CENTERFACE_IMAGE=centerface-toolkit/${TARGET}:${TOOLKIT_VERSION} \
    RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor

# Requirements first: this layer is reused until requirements.txt or docker/ change.
COPY requirements.txt /opt/centerface-toolkit/
COPY docker/ /opt/centerface-toolkit/docker/
RUN /opt/centerface-toolkit/docker/install.sh && useradd --create-home --uid 1000 toolkit
COPY toolkit/ /opt/centerface-toolkit/toolkit/
COPY targets/ /opt/centerface-toolkit/targets/
COPY calibration/ /opt/centerface-toolkit/calibration/

USER 1000
WORKDIR /work
ENTRYPOINT ["/opt/centerface-toolkit/docker/entrypoint.sh"]
CMD ["--help"]
