# securer-runc: build, rootfs, tests. Run as root for anything that starts
# containers.
SHELL    := /bin/bash
GO       ?= go
TAGS     := seccomp netgo osusergo
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION) -extldflags -static
BIN      := bin/securer-runc
ROOTFS   ?= /var/lib/securer-runc

.PHONY: all build deps rootfs demo test unit integration integration-loaded rpkg rtest bench fuzz fuzz-short vet clean \
	crash-cycles churn soak long hostile

all: build

# Debian packages the build, the rootfs and the benchmarks need; then the
# Go modules, staticcheck's too (through the module proxy).
deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		debootstrap libseccomp-dev pkg-config gcc libc6-dev \
		r-base-core r-cran-jsonlite r-cran-processx r-cran-r6 r-cran-testthat ca-certificates jq python3
	$(GO) mod download

build:
	CGO_ENABLED=1 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/securer-runc

rootfs: build
	$(BIN) rootfs build --dir $(ROOTFS)

# The main job: R code calling a host tool, inside the sandbox.
demo: rootfs
	$(BIN) run -e '1 + 1'
	$(BIN) run --tools examples/tools.json -e 'add(2, 3)'
	$(BIN) run --tools examples/tools.json -e 'str(get_weather("Boston"))'

# go vet, gofmt, go.mod/go.sum tidy, and staticcheck (its version is pinned
# by the tool line in go.mod, its checks are in staticcheck.conf; run it
# alone with: go tool staticcheck -tags '$(TAGS)' ./...).
vet:
	$(GO) vet -tags '$(TAGS)' ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(GO) tool staticcheck -tags '$(TAGS)' ./...

unit:
	$(GO) test -race -tags '$(TAGS)' $$($(GO) list ./... | grep -v /integration)

integration: rootfs
	$(GO) test -tags '$(TAGS)' -count=1 -timeout 30m -v ./integration/ 2>&1 | tee integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; test $${PIPESTATUS[0]} -eq 0

test: rootfs vet unit fuzz-short integration rtest

# The integration suite with every core kept busy by other processes,
# LOADED_RUNS times in a row (each run must pass).
LOADED_RUNS ?= 3
integration-loaded: rootfs
	@for i in $$(seq $(LOADED_RUNS)); do \
		echo "== loaded run $$i of $(LOADED_RUNS)"; \
		scripts/with-load.sh $(GO) test -tags '$(TAGS)' -count=1 -timeout 45m -v ./integration/ > integration-loaded-$$i.log 2>&1; \
		rc=$$?; grep -E '^(--- FAIL|FAIL|ok|panic)' integration-loaded-$$i.log; \
		[ $$rc -eq 0 ] || { echo "loaded run $$i failed (integration-loaded-$$i.log)"; exit 1; }; \
	done

# The R package (r/securer), installed into the site library.
rpkg:
	R CMD INSTALL r/securer

# The R package's testthat tests, against real containers (as root). Its
# sessions live under their own state dir and cgroup, checked empty after.
RTEST_STATE := /run/securer-rtest
RTEST_CGROUP := /securer-rtest
rtest: build rootfs rpkg
	cd r/securer/tests && SECURER_RUNC=$(CURDIR)/$(BIN) \
		SECURER_SERVE_ARGS="--state $(RTEST_STATE) --cgroup-parent $(RTEST_CGROUP)" \
		Rscript -e 'testthat::test_dir("testthat", package = "securer", load_package = "installed", stop_on_failure = TRUE)'
	@left=$$(find $(RTEST_STATE)/sessions $(RTEST_STATE)/containers -mindepth 1 -maxdepth 1 2>/dev/null); \
		if [ -n "$$left" ]; then echo "rtest left sessions behind: $$left"; exit 1; fi
	$(BIN) reap --state $(RTEST_STATE) --cgroup-parent $(RTEST_CGROUP) >/dev/null
	rm -rf $(RTEST_STATE)

bench: rootfs
	$(GO) test -tags '$(TAGS)' -run '^$$' -bench . -benchtime 20x -timeout 30m ./integration/

# Every fuzz target for FUZZTIME each (the recorded runs: 10m).
FUZZTIME ?= 10m
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# A short pass over every fuzz target, part of make test.
fuzz-short:
	scripts/fuzz.sh short

# The full-length long runs (the short versions run in make test); each
# prints its figures as the test's last log line. See HARDENING.md.
LONG = $(GO) test -tags '$(TAGS)' -count=1 -timeout 4h -v ./integration/ -run
LONGFILTER = 2>&1 | tee $@.log | grep -E '^(---|PASS|FAIL|ok|panic)|long_test' ; test $${PIPESTATUS[0]} -eq 0

crash-cycles: rootfs
	$(LONG) '^TestCrashCycles$$' -args -crash-cycles 1000 $(LONGFILTER)

churn: rootfs
	$(LONG) '^TestChurn$$' -args -churn-cycles 10000 -churn-warmup 1000 $(LONGFILTER)

soak: rootfs
	$(LONG) '^TestSoak$$' -args -soak 30m -soak-sessions 64 $(LONGFILTER)

# Hostile clients against a real serve (Unix socket and TCP with a token):
# unauthenticated floods, queued big payloads, idle connections, honest
# clients, a SIGTERM in the middle (the short version runs in make test).
HOSTILE ?= 2m
hostile: rootfs
	$(LONG) '^TestHostile$$' -args -hostile $(HOSTILE) 2>&1 | tee $@.log | grep -E '^(---|PASS|FAIL|ok|panic)|hostile_test' ; test $${PIPESTATUS[0]} -eq 0

long: crash-cycles churn soak fuzz

clean:
	rm -rf bin integration.log integration-loaded-*.log crash-cycles.log churn.log soak.log hostile.log v2-full.log

# The R package's copy of the value codec, from bridge/r/values.R (the one
# source; bridge's TestRPackageValues fails when they differ).
.PHONY: rvalues
rvalues:
	$(GO) generate ./bridge/

# cgroup v2: a cgroup-v2-only guest (QEMU, software emulation, Debian's
# kernel) with this host's / as its read-only root; see scripts/v2-guest.sh
# and HARDENING.md ("cgroup v2"). v2-smoke: doctor, verdicts, limits, reap
# and the pod case; v2-test: the integration tests matching V2_RUN; v2-ci:
# the smoke and the tests CI runs, in one boot; v2-full: the whole suite
# (1-2 h).
V2_RUN ?= ^TestVerdict
V2_CI_RUN ?= ^(TestFaultMissingKernelFeature|TestAdversarialProcess|TestReapCgroups|TestCleanup|TestTotalLimits)$$
.PHONY: v2-deps v2-smoke v2-test v2-ci v2-full
v2-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static cpio

v2-smoke: rootfs
	scripts/v2-guest.sh smoke

v2-test: rootfs
	scripts/v2-guest.sh test '$(V2_RUN)'

v2-ci: rootfs
	scripts/v2-guest.sh ci '$(V2_CI_RUN)'

v2-full: rootfs
	scripts/v2-guest.sh full 2>&1 | tee v2-full.log | grep -E '^(== |--- FAIL|FAIL|ok|panic)' ; test $${PIPESTATUS[0]} -eq 0
