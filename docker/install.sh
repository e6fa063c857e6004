#!/bin/sh
# Shared by every Dockerfile: trust extra CA certificates, make the venv, install the runtime
# requirements. Run as root from /opt/centerface-toolkit.
#   INDEX_URL   a PyPI mirror or index (optional)
#   VENV_FLAGS  extra `python3 -m venv` flags (vendor images: --system-site-packages, to see
#               the SDK's own Python packages such as tensorrt or CANN's te / amct)
#   EXTRA_PACKAGES  requirements a backend adds (space-separated), e.g. cuda-python for TensorRT
set -eu
cd /opt/centerface-toolkit

bundle="$(docker/trust-ca.sh)"

# shellcheck disable=SC2086  # VENV_FLAGS is a list of flags
python3 -m venv ${VENV_FLAGS:-} /opt/venv
set -- --no-cache-dir --disable-pip-version-check --progress-bar off --cert "$bundle"
[ -n "${INDEX_URL:-}" ] && set -- "$@" --index-url "$INDEX_URL"
# shellcheck disable=SC2086  # EXTRA_PACKAGES is a list of requirements
/opt/venv/bin/python -m pip install "$@" -r requirements.txt -c docker/constraints.txt ${EXTRA_PACKAGES:-}
