# TensorRT targets (t4, t4-int8, t4-buckets): NVIDIA's TensorRT image, pinned by tag. Engines are tied to
# the GPU and the TensorRT version, so they are built inside this image on the GPU that runs them; `run`
# passes the GPU with a device request (the host needs the NVIDIA Container Toolkit).
#
# Default: TensorRT 11 (CUDA 13), the release `pip install tensorrt` gives today. It still runs the T4
# (SM 7.5, Turing): NVIDIA's NGC release 26.10 "supports CUDA compute capability 7.5 and later ... NVIDIA
# Turing" (Triton Inference Server Release 26.10 notes, GPU Requirements; the TensorRT image is the same
# monthly release), and TensorRT 11's own build defaults to SM 75 among its targets (NVIDIA/TensorRT at
# a892d222, the 11.1 OSS release: CMakeLists.txt, CMAKE_CUDA_ARCHITECTURES 75 80 86 89 90 100 120).
# TensorRT 10 (CUDA 12) instead: build --target t4 --base-image nvcr.io/nvidia/tensorrt:24.08-py3
# (TensorRT 10.3). The toolkit supports 10 and 11 (strongly typed builds); anything else stops the build.
ARG BASE_IMAGE=nvcr.io/nvidia/tensorrt:26.10-py3
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG TOOLKIT_VERSION=dev
ARG TARGET=t4
ARG INDEX_URL=
ARG VENV_FLAGS=--system-site-packages
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
# cuda-python follows the CUDA of the base image's TensorRT: CUDA 12 with 10.x, CUDA 13 with 11.x. NNCF
# calibrates t4-int8's Q/DQ file.
RUN major="$(python3 -c 'import tensorrt; print(tensorrt.__version__.split(".")[0])')" \
    && case "$major" in \
         10) pin="cuda-python>=12,<13" ;; \
         11) pin="cuda-python>=13,<14" ;; \
         *) echo "TensorRT $major in ${BASE_IMAGE}: the toolkit supports TensorRT 10 and 11" >&2; exit 1 ;; \
       esac \
    && echo "TensorRT $major: $pin" \
    && EXTRA_PACKAGES="$pin nncf==3.4.0" /opt/centerface-toolkit/docker/install.sh && useradd --create-home --uid 1000 toolkit
COPY toolkit/ /opt/centerface-toolkit/toolkit/
COPY targets/ /opt/centerface-toolkit/targets/
COPY calibration/ /opt/centerface-toolkit/calibration/

USER 1000
WORKDIR /work
ENTRYPOINT ["/opt/centerface-toolkit/docker/entrypoint.sh"]
CMD ["--help"]
