#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Makes a small PKI for npipe's remote pipes with the openssl command:
#   ca.pem/ca.key          a CA (keep ca.key offline in real use)
#   server.pem/server.key  the gateway's certificate, for the names given
#                          (default: localhost 127.0.0.1 ::1)
#   client.pem/client.key  a client certificate (CN=npipe-client)
#   psk.txt                a pre-shared key "npipe-client:<64 hex digits>" (mode 600)
# Usage: scripts/make-certs.sh DIR [NAME...]      (NAME: DNS name or IP address)
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [NAME...]}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(localhost 127.0.0.1 ::1)
days=${NPIPE_CERT_DAYS:-825}
mkdir -p "$dir"
cd "$dir"
umask 077

san=""
for n in "${names[@]}"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="${san:+,}IP:$n"; else san+="${san:+,}DNS:$n"; fi
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days "$days" -subj "/O=npipe/CN=npipe CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# issue NAME SUBJECT EXTENSIONS: NAME.key + NAME.pem signed by the CA
issue() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days "$days" \
    -extfile <(printf '%s\n' "$3") 2>/dev/null
  rm -f "$1.csr"
}
issue server "/O=npipe/CN=${names[0]}" "subjectAltName=$san
extendedKeyUsage=serverAuth"
issue client "/O=npipe/CN=npipe-client" "extendedKeyUsage=clientAuth"
echo "npipe-client:$(openssl rand -hex 32)" > psk.txt
chmod 644 ca.pem server.pem client.pem
echo "made ca.pem, server.pem/.key (${names[*]}), client.pem/.key and psk.txt in $dir"
