#!/bin/sh
# Hosts behind a TLS-intercepting proxy: `build --extra-ca-cert FILE` puts the file in docker/ca/; append it to
# the system bundle and print the bundle's path. Run as root from /opt/centerface-toolkit.
set -eu
bundle=/etc/ssl/certs/ca-certificates.crt
for cert in docker/ca/*.crt; do
    [ -f "$cert" ] || continue
    mkdir -p "$(dirname "$bundle")"
    cat "$cert" >> "$bundle"
    echo "trusting extra CA certificates from $cert" >&2
done
echo "$bundle"
