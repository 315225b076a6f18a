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

.PHONY: run test build deps bench-xta

run: build
	$(BIN) pki demo --out var/pki
	$(BIN) serve --config fixtures/node.yaml

test: build
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './var/*')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-ed: $$unformatted" >&2; exit 1; fi
	$(GO) vet $(PKGS)
	$(BIN) pg temp -- $(GO) test $(GOTESTFLAGS) $(PKGS)

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/parzelle

deps:
	@./scripts/install-deps.sh

# Measures XTA sendMessage throughput against a raw PostgreSQL baseline and
# the memory a 40 MB message costs (figures in the issue notes).
bench-xta: build
	$(BIN) pg temp -- $(GO) test ./xta -run '^$$' -bench BenchmarkXTA -benchtime 1x
