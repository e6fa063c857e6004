# Ascend targets (310, 310p, 310p-fp16, the -buckets ones): Huawei's CANN image, pinned by tag (CANN 8.0.0,
# Ubuntu 22.04, Python 3.10), which carries atc and AMCT. ais_bench is not part of CANN: give its wheels
# (aclruntime, ais_bench) through EXTRA_PACKAGES or a mirror with --index-url.
# `run` mounts the chips (/dev/davinci<N>), the management nodes, the host's driver, npu-smi and DCMI.
# Runs as the invoking user (--user uid:gid), not root: the driver's nodes are crw-rw---- for HwHiAiUser's
# group, so `run` adds that group (--group-add, the gid read off /dev/davinci_manager). Only a host whose driver
# refuses anyone but root needs `user = "root"` in the target's [container], and the plan then says so.
# CANN releases: 310P3 targets from CANN 8.0; 310 targets CANN 8.0 up to 8.3 (8.5 dropped the Ascend310
# from atc's default operator packages).
ARG BASE_IMAGE=swr.cn-south-1.myhuaweicloud.com/ascendhub/cann:8.0.0-310p-ubuntu22.04-py3.10
FROM ${BASE_IMAGE} AS amct

ARG INDEX_URL=
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY docker/ /opt/centerface-toolkit/docker/
# AMCT in its own environment (docker/install-amct.sh: the wheel CANN ships, its custom operators built).
RUN /opt/centerface-toolkit/docker/install-amct.sh

FROM amct
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

COPY requirements.txt /opt/centerface-toolkit/
RUN /opt/centerface-toolkit/docker/install.sh
COPY toolkit/ /opt/centerface-toolkit/toolkit/
COPY targets/ /opt/centerface-toolkit/targets/
COPY calibration/ /opt/centerface-toolkit/calibration/

WORKDIR /work
ENTRYPOINT ["/opt/centerface-toolkit/docker/entrypoint.sh"]
CMD ["--help"]
