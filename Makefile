# The two commands a new user needs:
#   make run   start the node with the demo tenants (embedded PostgreSQL
#              unless DATABASE_URL is set)
#   make test  run go vet and every test against a throwaway PostgreSQL
#              cluster (or the one DATABASE_URL names)
# Both install what they need first and can be run again and again.

GO      ?= go
BIN     := bin/parzelle
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Extra flags for go test, e.g. make test GOTESTFLAGS='-run TestTenant -v'.
GOTESTFLAGS ?=
PKGS    ?= ./...
# Each fuzz target runs in make test for a number of executions, about 4 s
# each on a 2-core machine, not for a duration: Go 1.26's fuzz coordinator
# can fail a duration-bounded run at its deadline with "context deadline
# exceeded" though it found nothing (go.dev/issue/75804, fixed in Go 1.27).
# make fuzz FUZZTIME=10m searches longer (FUZZTIME applies to every target).
FUZZTIME ?=
FUZZ_TARGETS := ./xmlsafe:FuzzParse:30000x ./xmlsafe:FuzzDifferential:60000x ./c14n:FuzzCanonicalize:100000x \
	./xmldsig:FuzzVerify:1000x ./xmlenc:FuzzDecrypt:100x

.PHONY: run test build deps bench-xta bench-xml bench-register bench-pipeline bench-xnachweis bench-console bench-osci fuzz faults soak

run: build
	$(BIN) pki demo --out var/pki
	$(BIN) serve --config fixtures/node.yaml

test: build
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './var/*')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-ed: $$unformatted" >&2; exit 1; fi
	$(GO) vet $(PKGS)
	$(BIN) pg temp -- $(GO) test $(GOTESTFLAGS) $(PKGS)
	PARZELLE_FAULTS=short $(GO) test ./faults -run TestFaults -count=1 -v
	@$(MAKE) --no-print-directory fuzz

# Runs every fuzz target for its budget or FUZZTIME (the parser, alone and against its
# encoding/xml predecessor, C14N, the signature
# verifier and the decrypter); findings land in testdata/fuzz as seeds.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$(if $(FUZZTIME),$(FUZZTIME),$${rest#*:}); \
	  echo "fuzz $$pkg $$name for $$budget"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget -fuzzminimizetime 5s >/tmp/parzelle-fuzz.log 2>&1 || { cat /tmp/parzelle-fuzz.log; exit 1; }; \
	done

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/parzelle

deps:
	@./scripts/install-deps.sh

# Measures XTA sendMessage throughput against a raw PostgreSQL baseline and
# the memory a 40 MB message costs (figures in the issue notes).
bench-xta: build
	$(BIN) pg temp -- $(GO) test ./xta -run '^$$' -bench BenchmarkXTA -benchtime 1x

# Enveloped XML signatures per second at 4.5 KB and 1 MB: Parzelle, raw
# RSA signing with crypto alone, and xmlsec1 --repeat on the same files.
bench-xml: build
	$(GO) test ./xmldsig -run '^$$' -bench BenchmarkEnveloped -benchtime 2s | \
	  awk '/ops\/s/ { n=split($$1, p, "/"); printf "%-7s %-7s %-11s %10.1f ops/s\n", p[2], p[3], p[4], $$(NF-1) }'

# Register records per second, encrypted beside plaintext stored, in one
# run against one database: creates, updates, reads by id and searches by
# IDNr, and the cost of encryption per operation (goal: under 25 %).
bench-register: build
	$(BIN) pg temp -- $(GO) test ./register -run '^$$' -bench BenchmarkRegister -benchtime 1x

# XMeld messages per second from XTA to the register (accepted, applied,
# latency, machine CPU per message) beside raw baselines in the same run and
# database (a person's register rows written straight through pgx, one
# transaction each; one row INSERT+COMMIT each), and the mapping engine
# alone, measured after a warm-up round;
# PIPELINE_BENCH_N=… (2000) PIPELINE_BENCH_CLIENTS=… (16) size it. Messages
# sent at the same time are stored and applied together, so more clients
# (try 64) go faster. The node in it collects garbage as `serve` does
# (GOGC=400 unless GOGC is set).
bench-pipeline: build
	GOGC=$${GOGC:-400} $(BIN) pg temp -- $(GO) test ./jobs -run '^$$' -bench BenchmarkPipeline -benchtime 1x

# Signed evidence answers per second over HTTPS (mTLS keep-alive) at 16
# concurrent requesters and p50/p99 latency, then at half that rate, beside
# raw RSA signatures per second with the tenant's signing key (RSA-3072) in
# the same run, and the machine's CPU per answer;
# XNACHWEIS_BENCH_N=… (2000) XNACHWEIS_BENCH_CLIENTS=… (16) size it. The node
# in it collects garbage as `serve` does (GOGC=400 unless GOGC is set).
bench-xnachweis: build
	GOGC=$${GOGC:-400} $(BIN) pg temp -- $(GO) test ./xnachweis -run '^$$' -bench BenchmarkEvidence -benchtime 1x

# The console's dead-letter list (server-side paging: first, filtered and a
# deep page) and overview with 10,000 dead letters: p50 and p99 per page
# over 300 requests each (goals: list under 200 ms, overview under 100 ms).
bench-console: build
	$(BIN) pg temp -- $(GO) test ./console -run '^$$' -bench BenchmarkConsole -benchtime 1x

# OSCI storeDelivery per second at 16 concurrent HTTPS clients (10 KB
# content, transport-encrypted and signed, Governikus demo RSA-4096 keys),
# p50/p99 and CPU per delivery, beside the raw rate of the same
# cryptography per delivery in the same run (goal: at least half of it);
# OSCI_BENCH_N=… (800) OSCI_BENCH_CLIENTS=… (16) size it.
bench-osci: build
	GOGC=$${GOGC:-400} $(BIN) pg temp -- $(GO) test ./osci -run '^$$' -bench BenchmarkStoreDelivery -benchtime 1x
	$(BIN) pg temp -- $(GO) test ./osci -run '^$$' -bench BenchmarkPartialDelivery -benchtime 1x
	$(BIN) pg temp -- $(GO) test ./osci -run '^$$' -bench BenchmarkTwoNodes -benchtime 1x

# The fault suite, full form: a real node (a subprocess) on its own
# PostgreSQL under XTA load into a register inbox, through kill -9 of the
# node, a PostgreSQL restart, PostgreSQL stopped for 30 s, a spool that
# cannot be written and a second node on the same database; prints per
# fault the messages accepted, applied, lost, applied twice and stuck and
# the seconds until every acknowledged message was applied, then greps a
# pg_dump for the personal data sent. make test runs a short form.
faults: build
	PARZELLE_FAULTS=full $(GO) test ./faults -run TestFaults -count=1 -v -timeout 30m

# Mixed load for DURATION (default 30m) against a node subprocess: the
# register inbox, a message box, register searches and reads; prints every
# minute throughput, p99, errors, RSS, goroutines, open files, database
# connections and table sizes, so that a leak shows as a slope.
DURATION ?= 30m
soak: build
	PARZELLE_SOAK=$(DURATION) $(GO) test ./faults -run TestSoak -count=1 -v -timeout 0
