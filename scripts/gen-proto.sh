#!/usr/bin/env bash
# Regenerates the C2 API code from c2/api/c2pb/c2.proto and the HTTP
# routes in c2/api/c2pb/c2_http.yaml: protobuf messages, gRPC service,
# grpc-gateway handlers, the Swagger 2 document protoc-gen-openapiv2
# writes, and from it the OpenAPI 3 document the server serves
# (c2/api/openapi.json: converted and completed by TestOpenAPIDocument in
# c2/api/openapi_gen_test.go, which kin-openapi also validates). The
# generated files are committed. With --check (make proto-check) it
# generates into a temporary folder instead and fails if the result
# differs from the files in the tree.
#
# Needs protoc (Debian: protobuf-compiler libprotobuf-dev, for the
# well-known types). The Go plugins are built at pinned versions into a
# cache folder, so every machine generates byte-identical code.
set -euo pipefail

cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
GRPC_GATEWAY_VERSION=v2.33.0

bin="${E4KIT_PROTOC_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/e4kit-protoc/$PROTOC_GEN_GO_VERSION-$PROTOC_GEN_GO_GRPC_VERSION-$GRPC_GATEWAY_VERSION}"

if ! command -v protoc >/dev/null; then
  echo "gen-proto: protoc not found: apt-get install protobuf-compiler libprotobuf-dev (or run scripts/install-test-deps.sh)" >&2
  exit 1
fi
include=""
for dir in /usr/include /usr/local/include; do
  if [ -f "$dir/google/protobuf/timestamp.proto" ]; then include="$dir"; break; fi
done
if [ -z "$include" ]; then
  echo "gen-proto: google/protobuf/timestamp.proto not found: apt-get install libprotobuf-dev" >&2
  exit 1
fi

install_plugin() { # name package@version
  if [ ! -x "$bin/$1" ]; then
    GOBIN="$bin" GOFLAGS=-mod=mod go install "$2"
  fi
}
mkdir -p "$bin"
install_plugin protoc-gen-go "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
install_plugin protoc-gen-go-grpc "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
install_plugin protoc-gen-grpc-gateway "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$GRPC_GATEWAY_VERSION"
install_plugin protoc-gen-openapiv2 "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$GRPC_GATEWAY_VERSION"

src=c2/api/c2pb
generated=(c2.pb.go c2_grpc.pb.go c2.pb.gw.go c2.swagger.json)

# generate writes the generated files of $src into $1.
generate() {
  local out=$1 rules="$src/c2_http.yaml"
  PATH="$bin:$PATH" protoc \
    --proto_path="$src" --proto_path="$include" \
    --go_out="$out" --go_opt=paths=source_relative \
    --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
    --grpc-gateway_out="$out" --grpc-gateway_opt=paths=source_relative \
    --grpc-gateway_opt=grpc_api_configuration="$rules" \
    --openapiv2_out="$out" \
    --openapiv2_opt=grpc_api_configuration="$rules",disable_default_errors=false,json_names_for_fields=false \
    "$src/c2.proto"
  gofmt -w "$out"/*.go
}

# openapi3 converts the Swagger 2 document into c2/api/openapi.json
# (-update-openapi), or with "check" fails if that file is stale.
openapi3() {
  local flags=()
  if [ "$1" != check ]; then flags=(-args -update-openapi); fi
  if ! go test -count=1 -run '^TestOpenAPIDocument$' ./c2/api "${flags[@]}" >&2; then
    echo "gen-proto: c2/api/openapi.json is stale or c2/api does not build (fix it, then run make proto)" >&2
    return 1
  fi
}

if [ "${1:-}" != "--check" ]; then
  generate "$src"
  openapi3 update
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
generate "$tmp"
status=0
for f in "${generated[@]}"; do
  if ! diff -u "$src/$f" "$tmp/$f" > "$tmp/$f.diff"; then
    echo "gen-proto: $src/$f is not what c2.proto and c2_http.yaml generate (run make proto and commit):" >&2
    head -40 "$tmp/$f.diff" >&2
    status=1
  fi
done
openapi3 check || status=1
exit $status
