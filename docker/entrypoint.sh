#!/bin/bash
# The image's entry point: source the vendor SDK's environment when the image has one, run the CLI.
for env in /usr/local/Ascend/ascend-toolkit/set_env.sh; do
    # shellcheck disable=SC1090
    [ -f "$env" ] && . "$env"
done
exec python -m toolkit "$@"
