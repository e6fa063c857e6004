#!/bin/bash
# The image's entry point: source the vendor SDK's environment when the image has one, run the CLI.
for env in /usr/local/Ascend/ascend-toolkit/set_env.sh; do
    # shellcheck disable=SC1090
    [ -f "$env" ] && . "$env"
done
# `ray start ...` joins a Ray cluster as a worker node (run --engine ray); anything else is the CLI.
[ "${1:-}" = ray ] && exec "$@"
exec python -m toolkit "$@"
