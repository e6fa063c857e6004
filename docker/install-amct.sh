#!/bin/sh
# AMCT for ONNX (the 310P INT8 quantiser) in its own venv, /opt/amct, with the ONNX and ONNX Runtime its CANN
# release supports (CANN 8.0: ONNX 1.14.0 at opset 16 with ONNX Runtime 1.16.0, Python 3.10 / 3.11; AMCT checks
# the ONNX Runtime version when imported). CANN ships it as amct_onnx-<ver>-py3-none-linux_<arch>.whl beside
# amct_onnx_op.tar.gz, its ONNX Runtime custom operators, which are built against ONNX Runtime's headers
# (CANN 8.0.0 AMCT guide: "Building and Installing a Custom Operator Package"; its setup.py fetches the headers
# from GitHub, or takes them from docker/ort-headers/ on an offline host).
#   AMCT_ROOT      where to look for the wheel (default: the CANN toolkit)
#   AMCT_PACKAGES  the AMCT environment's pins
#   INDEX_URL      a PyPI mirror or index (optional)
set -eu
cd /opt/centerface-toolkit
bundle="$(docker/trust-ca.sh)"
root="${AMCT_ROOT:-/usr/local/Ascend/ascend-toolkit/latest}"
packages="${AMCT_PACKAGES:-onnx==1.14.0 onnxruntime==1.16.0 numpy<2 protobuf>=3.20.2,<5}"
wheel="$(find "$root/" -name "amct_onnx-*-py3-none-linux_$(uname -m).whl" 2>/dev/null | sort | tail -n 1)"
if [ -z "$wheel" ]; then
    echo "no amct_onnx-*-py3-none-linux_$(uname -m).whl under $root: AMCT is not installed, 310p INT8 is unavailable"
    exit 0
fi
echo "AMCT: $wheel"
python3 -m venv /opt/amct
set -- --no-cache-dir --disable-pip-version-check --progress-bar off --cert "$bundle"
[ -n "${INDEX_URL:-}" ] && set -- "$@" --index-url "$INDEX_URL"
# shellcheck disable=SC2086  # packages is a list of requirements
/opt/amct/bin/python -m pip install "$@" $packages "$wheel"
ops="$(dirname "$wheel")/amct_onnx_op.tar.gz"
if [ -f "$ops" ]; then
    build="$(mktemp -d)"
    tar -xzf "$ops" -C "$build"
    if [ -d /opt/centerface-toolkit/docker/ort-headers ]; then
        cp /opt/centerface-toolkit/docker/ort-headers/*.h "$build/amct_onnx_op/inc/"
    fi
    (cd "$build/amct_onnx_op" && /opt/amct/bin/python setup.py build)
    rm -rf "$build"
else
    echo "no amct_onnx_op.tar.gz beside $wheel: AMCT's custom operators are not built" >&2
    exit 1
fi
ln -sf /opt/amct/bin/amct_onnx /usr/local/bin/amct_onnx
