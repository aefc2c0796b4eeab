#!/usr/bin/env bash
# Make the lab's TLS certificates (lesson 05): a local CA and the certificates it signs,
# plus the deliberately bad ones the tests and smoke use. LAB CERTIFICATES ONLY: the CA
# key sits unprotected next to them, so anyone with this directory can mint certificates
# it trusts. Never use them, or this script, for anything but the tutorial.
#
#   scripts/make-certs.sh [DIR] [--force]      (DIR defaults to <repo>/build/certs)
#
# All files are PEM; keys are EC P-256 (fast to make and to use), mode 600.
#
#   ca.pem, ca.key                      the lab CA (10 years). Both sides trust ca.pem (--ca).
#   server.pem, server.key              the server (1 year): CN=rdma-lab-server, serverAuth,
#                                       subjectAltName DNS:localhost, DNS:rdma-lab-server and
#                                       the lab's addresses 127.0.0.1 ::1 10.0.0.1 10.0.0.2
#                                       fd00::1 fd00::2. The client checks its address or name
#                                       against that list.
#   client.pem, client.key              a client (1 year): CN=rdma-lab-client, clientAuth,
#                                       for mutual TLS (--mutual on both sides).
#   other-ca.pem, other-ca.key          a second, unrelated CA ("another lab")...
#   other-server.pem, other-server.key  ...and a server certificate it signed, same names:
#                                       a client trusting ca.pem must refuse it.
#   expired-server.pem, .key            signed by ca.pem, valid 2020-01-01 to 2020-01-02 only.
#   wrongname-server.pem, .key          signed by ca.pem, but names only
#                                       DNS:not-this-host.example.
#
# Idempotent: when DIR already holds every file, made by this version of the script, and
# the certificates are valid for at least 30 more days, nothing is done. Otherwise (or
# with --force) everything is made again in a temporary directory and moved into DIR, so
# DIR never holds a mix of two runs. Concurrent runs on the same DIR wait for each other
# (flock), so parallel tests can all call it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script="$root/scripts/$(basename "${BASH_SOURCE[0]}")"
dir="" force=0
for a in "$@"; do
  case $a in
    --force) force=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "make-certs: unknown option '$a' (try --help)" >&2; exit 2 ;;
    *) [ -z "$dir" ] || { echo "make-certs: one directory only" >&2; exit 2; }; dir=$a ;;
  esac
done
: "${dir:=$root/build/certs}"
command -v openssl >/dev/null || { echo "make-certs: the openssl command is missing: run scripts/install-deps.sh" >&2; exit 1; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
exec 9>"$dir/.make-certs.lock"
flock 9

names=(ca other-ca server client other-server expired-server wrongname-server)
stamp="$(sha256sum "$script" | cut -d' ' -f1) $(openssl version)"
up_to_date() {
  [ "$force" = 0 ] || return 1
  [ "$(cat "$dir/.make-certs.stamp" 2>/dev/null)" = "$stamp" ] || return 1
  local n
  for n in "${names[@]}"; do
    [ -s "$dir/$n.pem" ] && [ -s "$dir/$n.key" ] || return 1
  done
  # One run makes them all, and every leaf certificate lives 1 year (the CAs 10), so the
  # server's tells when they all need making again.
  openssl x509 -in "$dir/server.pem" -noout -checkend $((30 * 86400)) >/dev/null
}
if up_to_date; then
  echo "make-certs: $dir is up to date (${#names[@]} certificates; --force to make them again)"
  exit 0
fi

tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
umask 077  # keys are born mode 600; certificates are made readable below

# Our own configuration, so the result does not depend on /etc/ssl/openssl.cnf.
sans="DNS:localhost, DNS:rdma-lab-server, IP:127.0.0.1, IP:::1, IP:10.0.0.1, IP:10.0.0.2, IP:fd00::1, IP:fd00::2"
cat >"$tmp/openssl.cnf" <<EOF
[ req ]
distinguished_name = dn
prompt             = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
[ server_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = $sans
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
[ wrongname_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:not-this-host.example
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
# 'openssl ca' is used only for the expired certificate: unlike 'openssl x509 -req' in
# OpenSSL 3.0, it accepts explicit start and end dates (both in the past here).
[ ca ]
default_ca = lab_ca
[ lab_ca ]
database        = $tmp/ca-db/index.txt
new_certs_dir   = $tmp/ca-db
rand_serial     = yes
default_md      = sha256
policy          = any_name
unique_subject  = no
copy_extensions = none
[ any_name ]
commonName = supplied
EOF
mkdir "$tmp/ca-db"
: >"$tmp/ca-db/index.txt"

ossl() {  # run openssl quietly; on failure show what it said
  local out
  out=$(openssl "$@" 2>&1) || { echo "make-certs: openssl $1 failed:" >&2; echo "$out" >&2; exit 1; }
}
key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$1.key"; }
csr() { ossl req -new -config "$tmp/openssl.cnf" -key "$tmp/$1.key" -subj "/CN=$2" -out "$tmp/$1.csr"; }
self_signed_ca() {  # name CN
  key "$1"
  ossl req -new -x509 -config "$tmp/openssl.cnf" -key "$tmp/$1.key" -subj "/CN=$2" -days 3650 \
       -sha256 -extensions ca_ext -set_serial "0x$(openssl rand -hex 16)" -out "$tmp/$1.pem"
}
signed() {  # name CN issuer extensions
  key "$1"
  csr "$1" "$2"
  ossl x509 -req -in "$tmp/$1.csr" -CA "$tmp/$3.pem" -CAkey "$tmp/$3.key" -days 365 -sha256 \
       -set_serial "0x$(openssl rand -hex 16)" -extfile "$tmp/openssl.cnf" -extensions "$4" \
       -out "$tmp/$1.pem"
}

self_signed_ca ca "rdma-lab CA"
self_signed_ca other-ca "rdma-lab other CA (not trusted)"
signed server rdma-lab-server ca server_ext
signed client rdma-lab-client ca client_ext
signed other-server rdma-lab-server other-ca server_ext
signed wrongname-server rdma-lab-server ca wrongname_ext
key expired-server
csr expired-server rdma-lab-server
ossl ca -batch -config "$tmp/openssl.cnf" -notext -cert "$tmp/ca.pem" -keyfile "$tmp/ca.key" \
     -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$tmp/openssl.cnf" \
     -extensions server_ext -in "$tmp/expired-server.csr" -out "$tmp/expired-server.pem"

declare -A what=(
  [ca]="the lab CA, 10 years"
  [other-ca]="an unrelated CA, for the wrong-CA case"
  [server]="CN=rdma-lab-server, signed by ca, 1 year; $sans"
  [client]="CN=rdma-lab-client, signed by ca, 1 year, for mutual TLS"
  [other-server]="CN=rdma-lab-server, signed by other-ca"
  [expired-server]="CN=rdma-lab-server, signed by ca, expired on 2020-01-02"
  [wrongname-server]="CN=rdma-lab-server, signed by ca, names only DNS:not-this-host.example"
)
for n in "${names[@]}"; do
  chmod 644 "$tmp/$n.pem"
  chmod 600 "$tmp/$n.key"
  mv -f "$tmp/$n.key" "$dir/$n.key"
  mv -f "$tmp/$n.pem" "$dir/$n.pem"
  echo "make-certs: $dir/$n.pem + $n.key: ${what[$n]}"
done
echo "$stamp" >"$dir/.make-certs.stamp"
