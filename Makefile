# Cartera — the two commands a new machine needs are `make run` and `make test`.
GO      ?= go
# go.mod's toolchain line names the patched Go release the code is built
# and tested with; auto lets go fetch it (once, through the module proxy)
# where the machine's default is the local toolchain.
export GOTOOLCHAIN ?= auto
BIN     ?= bin/cartera
SDKTEST := internal/sdktest
BROWSERTEST := internal/browsertest

.PHONY: vulndb run cluster cluster-nodes cluster-one demo build test test-go test-clock sdk bench soak lint fuzz clean console-screenshots

build:
	$(GO) build -o $(BIN) ./cmd/cartera

# run starts the gateway with the examples, on 127.0.0.1:8080 and ./data/.
# The dev clock is on, so `make demo` can let a day pass in a second;
# `make run CARTERA_DEV_CLOCK=2026-12-07T09:30:00+01:00` starts it at a
# chosen instant (morning in Madrid, whatever the hour here).
CARTERA_DEV_CLOCK ?= 1
run: build
	CARTERA_DEV_CLOCK=$(CARTERA_DEV_CLOCK) ./$(BIN) serve --config examples/cartera.yaml

# cluster runs a cluster on this machine: three NATS servers with
# JetStream on 127.0.0.1:4222-4224 (cmd/cartera-nats, stores in
# data/nats/), then three Cartera nodes (cluster.node a, b, c) on
# 127.0.0.1:8080-8082 sharing the partitions of a stream replicated on all
# three servers (R3), with the examples and the dev clock. Any node takes
# events and answers every request (the console included, with its
# Cluster page; a backup is a tar of the streams); `make demo` works
# against it (on :8080) once the partitions have
# settled (~20 s). Ctrl-C stops everything. `make cluster-nodes` is the
# same; `make cluster-one` runs one node following the whole stream.
cluster cluster-nodes: build
	$(GO) build -o bin/cartera-nats ./cmd/cartera-nats
	@mkdir -p data/nats; rm -f data/nats/ready
	@./bin/cartera-nats --dir data/nats --ready-file data/nats/ready & nats=$$!; \
	trap 'kill $$nats $$a $$b 2>/dev/null; wait 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 1 600); do [ -s data/nats/ready ] && break; kill -0 $$nats 2>/dev/null || exit 1; sleep 0.1; done; \
	echo "NATS JetStream (R3): $$(cat data/nats/ready)"; \
	echo "Cartera node a: http://127.0.0.1:8080 (console: /console/), node b: http://127.0.0.1:8081, node c: http://127.0.0.1:8082"; \
	export CARTERA_DEV_CLOCK=$(CARTERA_DEV_CLOCK) CARTERA_CLUSTER_URL=$$(cat data/nats/ready) CARTERA_CLUSTER_REPLICAS=3 CARTERA_CLUSTER_IDENTITY_INDEX=1; \
	CARTERA_CLUSTER_NODE=a ./$(BIN) serve --config examples/cartera.yaml --data data/nodes/a/cartera.db --addr 127.0.0.1:8080 & a=$$!; \
	CARTERA_CLUSTER_NODE=b ./$(BIN) serve --config examples/cartera.yaml --data data/nodes/b/cartera.db --addr 127.0.0.1:8081 & b=$$!; \
	CARTERA_CLUSTER_NODE=c ./$(BIN) serve --config examples/cartera.yaml --data data/nodes/c/cartera.db --addr 127.0.0.1:8082

# cluster-one is `make run` in cluster mode: the three NATS servers, then
# one Cartera node on :8080 that follows the whole stream (no
# cluster.node).
cluster-one: build
	$(GO) build -o bin/cartera-nats ./cmd/cartera-nats
	@mkdir -p data/nats; rm -f data/nats/ready
	@./bin/cartera-nats --dir data/nats --ready-file data/nats/ready & nats=$$!; \
	trap 'kill $$nats 2>/dev/null; wait $$nats 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 1 600); do [ -s data/nats/ready ] && break; kill -0 $$nats 2>/dev/null || exit 1; sleep 0.1; done; \
	CARTERA_DEV_CLOCK=$(CARTERA_DEV_CLOCK) CARTERA_CLUSTER_URL=$$(cat data/nats/ready) CARTERA_CLUSTER_REPLICAS=3 \
		./$(BIN) serve --config examples/cartera.yaml --data data/cluster/cartera.db

# demo replays the seed scenario against `make run` (in another terminal).
demo: build
	./$(BIN) demo

# test runs every test, the SDK end-to-end tests included: Segment's Node
# SDK (needs Node.js and npm), Segment's and RudderStack's browser SDKs and
# the console in Chromium (needs Debian's chromium). .ci/run installs them
# on a bare machine.
test: sdk
	$(GO) vet ./...
	CARTERA_SDK_TEST=1 CARTERA_BROWSER_TEST=1 $(GO) test -race -count=1 -timeout 25m ./...
	# Three NATS servers at R3: built without -race (a data race inside
	# nats-server; see profiles/jetstream/replicated_norace_test.go).
	$(GO) test -count=1 -run 'TestReplicatedClusterTakeOver|TestServeOnReplicatedCluster|TestClusterTakesR3Stream' ./profiles/jetstream ./cmd/cartera ./internal/natscluster

# console-screenshots saves a screenshot of each console page to
# docs/console/ (the README shows them).
console-screenshots:
	CARTERA_CONSOLE_SCREENSHOTS=1 $(GO) test -count=1 -run TestConsoleInBrowser ./cmd/cartera

# test-clock runs the suite with the gateway's clock started at instants
# that once broke it (CARTERA_TEST_CLOCK; serve takes it as
# CARTERA_DEV_CLOCK) and in several time zones: 23:30 on a Sunday night
# and 03:00 in Madrid (quiet hours), 29 February, and 30 s before the hour
# Madrid's spring-forward skips. `make test` runs at the wall clock.
CLOCK_INSTANTS := \
	2026-12-06T23:30:00+01:00@Europe/Madrid \
	2026-12-07T03:00:00+01:00@America/Los_Angeles \
	2028-02-29T12:00:00+01:00@Pacific/Kiritimati \
	2027-03-28T01:59:30+01:00@UTC
test-clock: sdk
	@set -e; for at in $(CLOCK_INSTANTS); do \
		echo "== suite at $${at%@*} (TZ=$${at#*@})"; \
		CARTERA_TEST_CLOCK=$${at%@*} TZ=$${at#*@} CARTERA_SDK_TEST=1 CARTERA_BROWSER_TEST=1 $(GO) test -count=1 ./...; \
	done

# test-go runs the Go tests only (the SDK tests skip without node_modules
# or chromium).
test-go:
	$(GO) test -race -count=1 ./...

sdk:
	cd $(SDKTEST) && npm ci --no-audit --no-fund --loglevel=error
	cd $(BROWSERTEST) && npm ci --no-audit --no-fund --loglevel=error

# bench runs the Go benchmarks, then issue 14's load targets over HTTP
# (cmd/cartera-bench/targets.sh, about 6 minutes: a burst of ~10 M events,
# single tracks, half rates, event -> action; docs/benchmarks.md rounds 10
# and 12) and issue 18's flood (one key floods, another's trickle).
# BENCH_TARGETS= skips the HTTP runs; SUSTAINED=600s adds ten minutes
# sustained.
BENCH_TARGETS ?= burst track batch-half track-half action flood
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(if $(strip $(BENCH_TARGETS)),GO=$(GO) TARGETS="$(BENCH_TARGETS)$(if $(SUSTAINED), sustained)" cmd/cartera-bench/targets.sh)

# soak repeats the kill -9 fault tests of `make test` (acknowledged events;
# sends and timers) 200 times in a row (CARTERA_SOAK_KILLS) against one store.
CARTERA_SOAK_KILLS ?= 200
soak:
	CARTERA_SOAK_KILLS=$(CARTERA_SOAK_KILLS) $(GO) test -count=1 -timeout 60m -run TestKill9 -v ./internal/faults ./cmd/cartera

# govulncheck checks the code's call graph against the Go vulnerability
# database. VULNDB=https://vuln.go.dev reads it from Google; the default
# builds it from the database's own module (golang.org/x/vulndb, its OSV
# files at the newest commit), fetched through the Go module proxy, so
# lint needs no other host. When it names a module, update that module
# alone: go get -u MODULE, go mod tidy, then its packages' tests; when it
# names the standard library, raise the toolchain line of go.mod.
GOVULNCHECK ?= v1.10.0
VULNDB ?= $(CURDIR)/.cache/vulndb
lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(if $(findstring ://,$(VULNDB)),,$(MAKE) vulndb)
	$(GO) run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK) -db $(if $(findstring ://,$(VULNDB)),$(VULNDB),file://$(VULNDB)) ./...

# vulndb builds the vulnerability database govulncheck reads from the
# newest golang.org/x/vulndb (its data/osv files and cmd/indexdb).
vulndb:
	@set -e; v=$$($(GO) list -m -json golang.org/x/vulndb@latest | sed -n 's/.*"Version": "\(.*\)".*/\1/p'); \
	dir=$$($(GO) mod download -json golang.org/x/vulndb@$$v | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	rm -rf $(VULNDB); mkdir -p $(VULNDB); \
	echo "vulndb: golang.org/x/vulndb@$$v"; \
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$$v -vulns $$dir/data/osv -out $(VULNDB)

# fuzz runs every fuzz target (the list is in .ci/fuzz) for FUZZTIME each;
# CI runs 10,000 executions of each (.ci/run).
FUZZTIME ?= 60s
fuzz:
	GO=$(GO) .ci/fuzz $(FUZZTIME)

clean:
	rm -rf bin data
