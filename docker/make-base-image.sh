#!/bin/sh
# Make a Debian base image with Python from Debian's own packages, for hosts that reach no image
# registry: debootstrap a minimal root file system, then `docker import` it.
#   usage: make-base-image.sh IMAGE [SUITE] [MIRROR]
#   e.g.   make-base-image.sh centerface-toolkit/base:bookworm bookworm http://deb.debian.org/debian
# Needs root (debootstrap), debootstrap and a running Docker daemon.
set -eu

image=${1:?usage: make-base-image.sh IMAGE [SUITE] [MIRROR]}
suite=${2:-bookworm}
mirror=${3:-http://deb.debian.org/debian}
packages=python3,python3-venv,python3-pip,ca-certificates

root=$(mktemp -d "${TMPDIR:-/tmp}/centerface-base.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM

echo "debootstrap $suite from $mirror into $root (packages: $packages)"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror"
# Keep the image small: no package lists or caches in the layer.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
echo "docker import -> $image"
tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change 'LABEL io.centerface-toolkit.base=1' \
    --message "debootstrap --variant=minbase $suite ($mirror) + $packages" \
    - "$image"
