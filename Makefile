# E4kit build and test entry points. `make test` is what CI runs (.ci/run).
GO ?= go
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
STATICCHECK_VERSION := v0.8.2

.PHONY: test deps lint unit dev demo bench bench-transports bench-rotation bench-arch build

## test: install the real brokers the tests start (Mosquitto, RabbitMQ,
## libcoap), static checks, then every test with the race detector. The
## tests start each broker on free loopback ports and stop it by PID.
test: deps lint unit

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
	$(GO) test -run '^$$' -bench 'Throughput|Latency' -benchtime 20000x ./transport/mqtt/
	$(GO) test -run '^$$' -bench . -benchtime 20000x ./transport/amqp/
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./transport/coap/

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
