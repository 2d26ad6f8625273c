# E4kit build and test entry points. `make test` is what CI runs (.ci/run).
GO ?= go
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
STATICCHECK_VERSION := v0.8.2

.PHONY: test deps lint unit unit-norace dev demo bench bench-transports bench-rotation bench-arch build

## test: install the real brokers the tests start (Mosquitto, RabbitMQ,
## libcoap), static checks, then every test with the race detector, and
## the allocation checks without it. The tests start each broker on free
## loopback ports and stop it by PID.
test: deps lint proto-check unit unit-norace

deps:
	./scripts/install-test-deps.sh
	./scripts/install-bench-deps.sh

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

## unit-norace: the allocation checks (tests named *Alloc*) of the packages
## with a hot path, without the race detector. Under -race, sync.Pool drops
## a share of what is put back, so the checks of code that pools its
## buffers (the E4 decorator) build only without it (//go:build !race);
## the others run in both modes.
NORACE_PKGS ?= ./e4/... ./transport/...
unit-norace:
	$(GO) test -count=1 -run 'Alloc' $(NORACE_PKGS)

## build: the e4 binary into ./bin.
build:
	$(GO) build -o bin/e4 ./cmd/e4

## dev: the main job with embedded defaults: C2, an embedded MQTT broker
## and three devices (Ctrl-C stops it).
dev:
	$(GO) run ./cmd/e4 dev

## demo: protect, unprotect, tamper and replay one message, offline.
demo:
	$(GO) run ./cmd/e4 demo

## bench: the crypto-core benchmarks with their baselines, in one run.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./benchmarks/ | $(GO) run ./benchmarks/ratio

## bench-transports: messages/s and median latency per adapter, bare and
## through E4, against real Mosquitto, RabbitMQ and our CoAP broker.
bench-transports: deps
	$(GO) test -run '^$$' -bench 'Throughput|Latency' -benchtime 100000x ./transport/mqtt/
	$(GO) test -run '^$$' -bench . -benchtime 20000x ./transport/amqp/
	$(GO) test -run '^$$' -bench 'Throughput|Latency' -benchtime 10000x ./transport/coap/

## bench-rotation: one topic of 10,000 members rotated over Mosquitto
## (commands/s until the broker acknowledged all) beside the bare broker
## publish rate for the same message size, in one run.
bench-rotation: deps
	$(GO) test -run '^$$' -bench 'BarePublish10k|RotateTopic10k' -benchtime 3x -timeout 20m ./c2/e2e/

## bench-arch: the core's tests (vectors included) and benchmarks on eleven
## Linux architectures, natively or under qemu-user, with instructions per
## operation; writes benchmarks/results/ and the README's results section.
bench-arch:
	./scripts/install-bench-deps.sh
	$(GO) run ./benchmarks/arch

## proto: regenerate the C2 API code (c2/api/c2pb) from c2.proto and
## c2_http.yaml with pinned plugin versions, and the OpenAPI 3 document
## (c2/api/openapi.json) from their Swagger 2 output.
proto:
	./scripts/gen-proto.sh

## proto-check: regenerate into a temporary folder and fail if the
## generated code in the tree differs (protoc comes from deps).
proto-check: deps
	./scripts/gen-proto.sh --check

## bench-c2-api: requests/s and p50/p99 latency of the C2 API with 32
## concurrent callers, over gRPC and HTTP/JSON, token check and audit on.
bench-c2-api:
	$(GO) test -run '^$$' -bench Load -benchtime 4000x ./c2/api/

## fuzz-c2-api: fuzz the HTTP handlers (malformed JSON, paths, methods).
fuzz-c2-api:
	$(GO) test -run '^$$' -fuzz FuzzHTTP -fuzztime 60s ./c2/api/
