# TensorRT targets (t4, t4-int8): NVIDIA's TensorRT image, pinned by tag (TensorRT 10.3, CUDA 12.6,
# Ubuntu 22.04, Python 3.10). Engines are tied to the GPU and the TensorRT version, so they are
# built inside this image on the GPU that runs them; `run` passes the GPU with a device request
# (the host needs the NVIDIA Container Toolkit).
ARG BASE_IMAGE=nvcr.io/nvidia/tensorrt:24.08-py3
FROM ${BASE_IMAGE}

ARG TOOLKIT_VERSION=dev
ARG TARGET=t4
ARG INDEX_URL=
ARG VENV_FLAGS=--system-site-packages
ARG EXTRA_PACKAGES="cuda-python>=12,<13"
LABEL org.opencontainers.image.title="centerface-toolkit" \
      org.opencontainers.image.version="${TOOLKIT_VERSION}" \
      io.centerface-toolkit.target="${TARGET}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/centerface-toolkit \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    MPLCONFIGDIR=/tmp/matplotlib \
    CENTERFACE_IMAGE=centerface-toolkit/${TARGET}:${TOOLKIT_VERSION}

# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
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
