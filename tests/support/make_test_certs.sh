#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The certificates the remote tests use, made with the openssl command:
# the documented PKI (scripts/make-certs.sh) plus the bad cases.
#   DIR/{ca,server,client}.pem/.key, DIR/psk.txt      good ones
#   DIR/other/...                                       a second, unrelated CA and its certificates
#   DIR/expired.pem/.key         server certificate that expired yesterday
#   DIR/client-expired.pem/.key  client certificate that expired yesterday
#   DIR/wronghost.pem/.key       server certificate for elsewhere.example only
#   DIR/psk-wrong.txt            the right identity with another key
#   DIR/psk-unknown.txt          an identity the gateway does not know
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: make_test_certs.sh DIR}
"$here/../../scripts/make-certs.sh" "$dir" localhost 127.0.0.1 ::1 >/dev/null
"$here/../../scripts/make-certs.sh" "$dir/other" localhost 127.0.0.1 ::1 >/dev/null
cd "$dir"
umask 077
issue() { # NAME SUBJECT DAYS EXTENSIONS
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days "$3" \
    -extfile <(printf '%s\n' "$4") 2>/dev/null
  rm -f "$1.csr"
}
issue expired "/O=npipe/CN=localhost" -1 "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
issue client-expired "/O=npipe/CN=npipe-client" -1 "extendedKeyUsage=clientAuth"
issue wronghost "/O=npipe/CN=elsewhere.example" 30 "subjectAltName=DNS:elsewhere.example"
echo "npipe-client:$(openssl rand -hex 32)" > psk-wrong.txt
echo "stranger:$(openssl rand -hex 32)" > psk-unknown.txt
