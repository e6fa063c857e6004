# Ascend targets (310, 310p, 310p-fp16): Huawei's CANN image, pinned by tag (CANN 8.0.0, Ubuntu
# 22.04, Python 3.10), which carries atc and amct_onnx. ais_bench is not part of CANN: give its
# wheels (aclruntime, ais_bench) through EXTRA_PACKAGES or a mirror with --index-url.
# `run` mounts the chips (/dev/davinci<N>), the management nodes, the host's driver and npu-smi.
# Runs as root: the driver's device nodes belong to root and HwHiAiUser.
ARG BASE_IMAGE=swr.cn-south-1.myhuaweicloud.com/ascendhub/cann:8.0.0-310p-ubuntu22.04-py3.10
FROM ${BASE_IMAGE}

ARG TOOLKIT_VERSION=dev
ARG TARGET=310p
ARG INDEX_URL=
ARG VENV_FLAGS=--system-site-packages
ARG EXTRA_PACKAGES=
LABEL org.opencontainers.image.title="centerface-toolkit" \
      org.opencontainers.image.version="${TOOLKIT_VERSION}" \
      io.centerface-toolkit.target="${TARGET}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/centerface-toolkit \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    MPLCONFIGDIR=/tmp/matplotlib \
    CENTERFACE_IMAGE=centerface-toolkit/${TARGET}:${TOOLKIT_VERSION}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements.txt /opt/centerface-toolkit/
COPY docker/ /opt/centerface-toolkit/docker/
# AMCT for ONNX ships inside CANN as a source package; install it into the venv when present.
RUN /opt/centerface-toolkit/docker/install.sh \
    && amct="$(find /usr/local/Ascend/ascend-toolkit/latest/ -path '*amct_onnx*' -name 'amct_onnx-*.tar.gz' | head -n 1)" \
    && if [ -n "$amct" ]; then /opt/venv/bin/python -m pip install --no-cache-dir "$amct"; fi
COPY toolkit/ /opt/centerface-toolkit/toolkit/
COPY targets/ /opt/centerface-toolkit/targets/
COPY calibration/ /opt/centerface-toolkit/calibration/

WORKDIR /work
ENTRYPOINT ["/opt/centerface-toolkit/docker/entrypoint.sh"]
CMD ["--help"]
