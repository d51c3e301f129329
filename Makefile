# skewguard: `make demo` runs the whole story on real parts; `make test` runs every test.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/skewguard
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/skewguard/skewguard/internal/buildinfo.Version=$(VERSION)

.PHONY: build test test-unit vet

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/skewguard

vet:
	$(GO) vet ./...

test-unit:
	$(GO) test -count=1 ./...

test: vet test-unit
