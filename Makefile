# runledger: the two commands a fresh machine needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/runledger
PKGS    := ./...
# Test artifacts (the browser tests' screenshots) are kept here by `make test`.
ARTIFACTS := test-artifacts

.PHONY: run demo build test test-js vet fmt-check fuzz bench clean

## run: local PostgreSQL under ./.data, migrate, serve, print tokens and curl lines
run: build
	./$(BIN) dev

## demo: simulated dialers on the worker SDK against the server `make run` started (in another
## terminal), opening with an act that plays every ending of a run (about 70 s); tokens signed
## with RUNLEDGER_AUTH_SECRET or .data/auth-secret; DEMO_ARGS="--duration 60s"
demo: build
	./$(BIN) demo $(DEMO_ARGS)

build:
	$(GO) build -o $(BIN) ./cmd/runledger

## test: vet, then every test against a private PostgreSQL cluster the tests start themselves
## (with Chromium installed, the page's browser tests too, with axe-core from api/web's npm ci:
## their screenshots are kept under test-artifacts/_artifacts/), then the page's JavaScript
## unit tests when node is installed
test: vet fmt-check
	@rm -rf $(ARTIFACTS) && mkdir -p $(ARTIFACTS)
	@if [ ! -d api/web/node_modules/axe-core ] && command -v npm >/dev/null 2>&1; then \
	  (cd api/web && npm ci --no-audit --no-fund) || echo "npm ci failed: the browser tests run without axe-core"; fi
	$(GO) test -race -count=1 -timeout 8m -artifacts -outputdir $(CURDIR)/$(ARTIFACTS) $(PKGS)
	@if command -v node >/dev/null 2>&1; then node --test api/web/test/; \
	else echo "node not found: skipped the page's JavaScript unit tests (node --test api/web/test/)"; fi
	@$(MAKE) --no-print-directory test-js

## test-js: the watcher package's tests (Vitest, tsc --strict; npm ci first when node_modules is
## missing). The Python client's tests run in `go test ./clients/` (python3 -m unittest).
test-js:
	@if command -v npm >/dev/null 2>&1; then \
		cd clients/js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test; \
	else echo "npm not found: skipped the watcher package's tests (clients/js: npm test)"; fi

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin .data $(ARTIFACTS) clients/js/node_modules clients/js/watcher.js

## bench: every workload of issue 6 against a local cluster it starts; BENCH_QUICK=1 for a short run
bench: build
	$(GO) run ./cmd/runledger-bench -bin $(BIN) -out bench-report.json
