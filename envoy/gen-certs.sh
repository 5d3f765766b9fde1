#!/usr/bin/env bash
# Development TLS certificates, written to envoy/certs/ (gitignored; never commit them), all
# signed by one throwaway CA (ca.crt):
#   server.crt/.key        Envoy's mcp_tls listener: localhost, 127.0.0.1 and the service `envoy`.
#                          MCP clients trust ca.crt.
#   ext-service.crt/.key   the ext-service's gRPC port (listen.grpc.tls in deploy/gateway.yaml):
#                          the name `ext-service` Envoy checks, plus the replicas' service names.
#   envoy-client.crt/.key  the client certificate Envoy presents to the ext-service (mutual TLS:
#                          the ext-service refuses clients without a certificate from ca.crt).
#
# Usage: envoy/gen-certs.sh [--force]     (existing certificates are kept unless --force)
# MCP_GATEWAY_CERTS_DIR overrides the output directory.
set -euo pipefail

dir="${MCP_GATEWAY_CERTS_DIR:-$(cd "$(dirname "$0")" && pwd)/certs}"
days=825

if [[ -f "$dir/server.crt" && -f "$dir/ext-service.crt" && -f "$dir/envoy-client.crt" && "${1:-}" != "--force" ]]; then
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

# leaf NAME CN EXTENDED_KEY_USAGE SUBJECT_ALT_NAMES: a key and a certificate signed by the CA.
leaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
    -subj "/CN=$2" -keyout "$work/$1.key" -out "$work/$1.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$3"
    if [[ -n "$4" ]]; then echo "subjectAltName=$4"; fi
  } >"$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$work/$1.ext" -out "$work/$1.crt" 2>/dev/null
}
leaf server localhost serverAuth "DNS:localhost,DNS:envoy,IP:127.0.0.1,IP:::1"
leaf ext-service ext-service serverAuth "DNS:ext-service,DNS:ext-service-1,DNS:ext-service-2,DNS:localhost,IP:127.0.0.1"
leaf envoy-client envoy clientAuth ""

# The Envoy and ext-service images run as unprivileged users that are not the files' owner on the
# host: the dev keys must be readable by them. Acceptable for throwaway dev keys; production keys
# come from a secret store (Envoy SDS, a mounted secret) instead.
install -m 0644 "$work/ca.crt" "$dir/ca.crt"
install -m 0644 "$work/server.crt" "$dir/server.crt"
install -m 0644 "$work/server.key" "$dir/server.key"
install -m 0644 "$work/ext-service.crt" "$dir/ext-service.crt"
install -m 0644 "$work/ext-service.key" "$dir/ext-service.key"
install -m 0644 "$work/envoy-client.crt" "$dir/envoy-client.crt"
install -m 0644 "$work/envoy-client.key" "$dir/envoy-client.key"
echo "envoy/certs: wrote ca.crt, server.*, ext-service.*, envoy-client.* (valid $days days)"
