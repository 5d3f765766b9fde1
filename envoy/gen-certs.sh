#!/usr/bin/env bash
# Development TLS certificates for Envoy's mcp_tls listener (envoy/envoy.yaml), written to
# envoy/certs/ (gitignored; never commit them). Makes a throwaway CA and a server certificate for
# localhost, 127.0.0.1 and the compose service name `envoy`. Clients trust envoy/certs/ca.crt.
#
# Usage: envoy/gen-certs.sh [--force]     (existing certificates are kept unless --force)
# MCP_GATEWAY_CERTS_DIR overrides the output directory.
set -euo pipefail

dir="${MCP_GATEWAY_CERTS_DIR:-$(cd "$(dirname "$0")" && pwd)/certs}"
days=825

if [[ -f "$dir/server.crt" && -f "$dir/server.key" && "${1:-}" != "--force" ]]; then
  echo "envoy/certs: certificates exist (use --force to replace them)"
  exit 0
fi
command -v openssl >/dev/null || { echo "gen-certs.sh: openssl is required" >&2; exit 1; }

mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days "$days" \
  -subj "/CN=mcp-gateway dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null

openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
  -subj "/CN=localhost" -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null

cat >"$work/server.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:envoy,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days "$days" -sha256 -extfile "$work/server.ext" -out "$work/server.crt" 2>/dev/null

# The Envoy image runs as an unprivileged user that is not the file's owner on the host: the dev
# key must be readable by it. Acceptable for a throwaway dev key; production keys come from a
# secret store (SDS) instead.
install -m 0644 "$work/server.crt" "$dir/server.crt"
install -m 0644 "$work/server.key" "$dir/server.key"
install -m 0644 "$work/ca.crt" "$dir/ca.crt"
echo "envoy/certs: wrote ca.crt, server.crt, server.key (valid $days days)"
