# E4kit build and test entry points. `make test` is what CI runs (.ci/run).
GO ?= go
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
STATICCHECK_VERSION := v0.8.2

.PHONY: test deps lint unit demo bench bench-transports build

## test: install the real brokers the tests start (Mosquitto, RabbitMQ,
## libcoap), static checks, then every test with the race detector. The
## tests start each broker on free loopback ports and stop it by PID.
test: deps lint unit

deps:
	./scripts/install-test-deps.sh

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

## demo: the main job with embedded defaults.
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
