# skewguard: `make demo` runs the whole story on real parts; `make test` runs every test.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/skewguard
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -s -w -X github.com/skewguard/skewguard/internal/buildinfo.Version=$(VERSION) -X github.com/skewguard/skewguard/internal/buildinfo.Commit=$(COMMIT)

.PHONY: build test test-unit test-integration vet stack-up stack-down stack-status stack-clean stack-selftest

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/skewguard

vet:
	$(GO) vet ./...

test-unit:
	$(GO) test -count=1 ./...

# The real local stack (hack/README.md): PostgreSQL, Temporal, Kubernetes (etcd, apiserver,
# controller-manager, scheduler, kwok, pod launcher), Traefik and Prometheus on 127.0.0.1.
stack-up:
	hack/stack.sh up

stack-down:
	hack/stack.sh down

stack-status:
	hack/stack.sh status

stack-clean:
	hack/stack.sh clean

# Proves on a throwaway stack of its own that `up` twice is a no-op and `down` leaves nothing.
stack-selftest:
	hack/stack-selftest.sh

# Integration tests only, on the running stack.
test-integration:
	hack/test.sh integration

# vet, unit tests, the stack self-test, then the integration tests on the real stack (started
# here when it is not running, and stopped again afterwards).
test:
	hack/test.sh all

.PHONY: demo demo-down manifests bench bench-stack bench-lifecycles bench-pins chaos fuzz

# The chaos run on the running stack (cmd/chaos): 2 api + 2 worker processes, one app through
# CHAOS_VERSIONS versions, a session fleet through Traefik, SIGKILL faults; one table, non-zero
# exit if a line fails. CHAOS_SEED, CHAOS_VERSIONS, CHAOS_DURATION, CHAOS_SESSIONS,
# CHAOS_STACK_FAULTS (README: make chaos). `make test` ends with a short run (hack/test.sh).
chaos: build
	@env_file=$$(hack/stack.sh env) || exit 1; set -a; source "$$env_file"; set +a; \
	  CHAOS_SKEWGUARD=$(CURDIR)/$(BIN) $(GO) run ./cmd/chaos

# The whole story on real parts: stack up, skewguard built and started, myapp v1 then v2 applied,
# sessions pinned through Traefik, v1 drained, expired and scaled to 0 (hack/demo.sh).
demo:
	hack/demo.sh

# Stop the demo's skewguard and the stack.
demo-down:
	-@if [ -f .stack/run/demo-skewguard.pid ]; then kill $$(cat .stack/run/demo-skewguard.pid) 2>/dev/null; rm -f .stack/run/demo-skewguard.pid; fi
	hack/stack.sh down

# Regenerate deploy/kubernetes/ from the Helm chart.
manifests:
	hack/render-manifests.sh

# Benchmarks that need no stack, then one table of their figures (internal/benchtable): goal,
# floor or peer measured in the same run, ratio. README: Benchmarks.
bench:
	@set -o pipefail; { \
	  $(GO) test -run '^$$' -bench '^BenchmarkRegistrationFastPath$$' -benchtime 20000x -count 1 -timeout 10m ./api && \
	  $(GO) test -run '^$$' -bench 'Lifecycle24h' -benchtime 20x ./workflows && \
	  $(GO) test -run '^$$' -bench 'Render1000Pins' -benchtime 20x ./internal/routes; \
	} 2>&1 | BENCHTABLE_TITLE="make bench ($$(nproc) cores, $$(date -u +%F))" $(GO) run ./cmd/benchtable

# The benchmarks that need the running stack (started with make stack-up or make demo), then one
# table: the flip, registration with PostgreSQL, lifecycles at scale, traffic checks, routes at
# scale. README: Benchmarks.
bench-stack: build
	@env_file=$$(hack/stack.sh env) || exit 1; set -a; source "$$env_file"; set +a; set -o pipefail; { \
	  $(GO) test -tags integration -run '^$$' -bench 'Flip' -benchtime 1x -timeout 30m ./internal/e2e && \
	  $(GO) test -tags integration -run '^$$' -bench '^BenchmarkRegistrationFastPathPostgres$$' -benchtime 20000x -count 1 -timeout 10m ./api && \
	  $(GO) test -tags integration -run '^$$' -bench 'BenchmarkTrafficChecks' -benchtime 1x -timeout 15m ./activities && \
	  $(GO) test -tags integration -run '^$$' -bench 'BenchmarkRouteFlip100Pins' -benchtime 5x -timeout 15m ./internal/kube && \
	  $(GO) test -tags integration -run '^$$' -bench 'BenchmarkConvergeRestart1000Apps' -benchtime 1x -timeout 30m ./internal/converge && \
	  $(GO) run ./cmd/lifecycles -skewguard $(CURDIR)/$(BIN) $(BENCH_LIFECYCLES_FLAGS); \
	} 2>&1 | BENCHTABLE_TITLE="make bench-stack ($$(nproc) cores, $$(date -u +%F))" $(GO) run ./cmd/benchtable

# Open version lifecycles on one skewguard worker and a private Temporal dev server
# (cmd/lifecycles): worker RSS and CPU, Temporal actions at rest, growth between the sizes.
# bench-stack runs a small size; the issue's 1,000 then 10,000 takes about 30 minutes here:
#   make bench-lifecycles BENCH_LIFECYCLES_FLAGS='-n 1000,10000'
BENCH_LIFECYCLES_FLAGS ?= -n 100,1000 -window 1m
bench-lifecycles: build
	@env_file=$$(hack/stack.sh env) || exit 1; set -a; source "$$env_file"; set +a; set -o pipefail; \
	  $(GO) run ./cmd/lifecycles -skewguard $(CURDIR)/$(BIN) $(BENCH_LIFECYCLES_FLAGS) | $(GO) run ./cmd/benchtable

# The gateway's throughput with 150 pinned versions of one app beside 1, through Traefik on the
# running stack (README: 150 pinned versions). SKEWGUARD_PINS_LOAD_* set its size.
bench-pins:
	@env_file=$$(hack/stack.sh env) || exit 1; set -a; source "$$env_file"; set +a; \
	  $(GO) test -tags integration -run '^$$' -bench 'Throughput150Pins' -benchtime 1x -timeout 30m -v ./internal/stacktest

# Every fuzz target, one after another on all cores, FUZZTIME each (default 1000000x: one million
# executions); FUZZ_TARGETS (regex on "<package dir>.<Target>") selects. New interesting inputs
# are kept in <package>/testdata/fuzz/<Target>/ (the FUZZ_KEEP smallest, default 20). hack/fuzz.sh.
fuzz:
	hack/fuzz.sh
