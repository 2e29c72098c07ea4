# securer-runc: build, rootfs, tests. Run as root for anything that starts
# containers.
SHELL    := /bin/bash
# go on PATH, or the toolchain make deps installed when PATH has none or
# an old one (scripts/install-go.sh); evaluated when used, so that
# `make deps build` finds what deps just installed.
GO       ?= $(shell scripts/install-go.sh --which 2>/dev/null || echo go)
TAGS     := seccomp netgo osusergo
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION) -extldflags -static
BIN      := bin/securer-runc
ROOTFS   ?= /var/lib/securer-runc
GOROOT_DIR ?= /usr/local/go
export GOROOT_DIR

.PHONY: all build deps rootfs demo test unit integration integration-loaded rpkg rtest ts-build ts-test ts-bench bench fuzz fuzz-short vet clean \
	crash-cycles churn soak long hostile image image-check image-test manifests-test sidecar-e2e client-python

all: build

# Debian packages the build, the rootfs and the benchmarks need; the Go
# toolchain go.mod pins, when go on PATH is not it (scripts/install-go.sh:
# on a stock Debian 12, through Debian's golang-go and the module proxy,
# into GOROOT_DIR); then the Go modules, staticcheck's too (through the
# module proxy).
deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		debootstrap libseccomp-dev pkg-config gcc libc6-dev \
		r-base-core r-cran-jsonlite r-cran-processx r-cran-r6 r-cran-testthat ca-certificates jq python3 python3-pip python3-setuptools python3-wheel \
		runc crun umoci
	scripts/install-go.sh
	$(GO) mod download
	# The MCP tests' third-party client: the official TypeScript SDK
	# (integration/mcpnode, pinned by its package-lock.json), run by node.
	command -v node >/dev/null && command -v npm >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
	cd integration/mcpnode && npm ci --no-audit --no-fund
	cd deploy/image && $(GO) mod download
	cd deploy/kubernetes && $(GO) mod download
	# The TypeScript client's build tool (tsc, clients/typescript's lockfile).
	cd $(TS_DIR) && npm ci --no-audit --no-fund

# The binary is for every user (sandbox = FALSE runs need no root), also
# when a build runs under a hardened umask (the install test's 077).
build:
	CGO_ENABLED=1 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/securer-runc
	chmod 0755 $(BIN)

rootfs: build
	$(BIN) rootfs build --dir $(ROOTFS)

# The sidecar image: an OCI image layout in $(IMAGE) holding the static
# binary and the R rootfs in $(ROOTFS) (read, not rebuilt), entrypoint
# securer-runc serve; built without Docker by deploy/image (its own Go
# module), then read back and checked. Loading it: README, "Operating it".
IMAGE      ?= bin/image
IMAGE_NAME ?= securer-runc:$(VERSION)
IMAGE_TOOL := cd deploy/image && $(GO) run .
image: build
	$(IMAGE_TOOL) build --binary $(CURDIR)/$(BIN) --rootfs $(ROOTFS) --out $(abspath $(IMAGE)) --name $(IMAGE_NAME)
	$(IMAGE_TOOL) verify --layout $(abspath $(IMAGE))

# A second reader of the layout: umoci (apt-get install umoci) unpacks
# it, then the image's own binary checks the unpacked R rootfs against
# the digest in its manifest.
image-check:
	@command -v umoci >/dev/null || { echo "image-check needs umoci: apt-get install umoci"; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		tag=$$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' $(IMAGE)/index.json) && \
		umoci raw unpack --image $(IMAGE):$$tag "$$tmp/root" >/dev/null && \
		"$$tmp/root/usr/local/bin/securer-runc" rootfs verify --dir "$$tmp/root/var/lib/securer-runc" > "$$tmp/verify.out" && \
		head -1 "$$tmp/verify.out"

# The image tool's own tests (no root, no rootfs needed).
image-test:
	cd deploy/image && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) test -count=1 ./...

# deploy/kubernetes: every manifest decoded strictly into the Kubernetes
# API types (its own Go module, so k8s.io/api stays out of the engine's).
manifests-test:
	cd deploy/kubernetes && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) vet -tags sidecare2e ./... && $(GO) test -count=1 ./...

# The sidecar end-to-end: the image run by runc the way a node runs the
# pod of deploy/kubernetes (runtime config translated from the manifest:
# its privileges and no more), an agent container calling a tool from R
# through the shared socket, exec probes, a SIGTERM drain within the
# pod's grace (deploy/kubernetes/e2e_test.go). Mode (b), privileged,
# everywhere; mode (a), user namespaces, on cgroup v2 (make v2-ci).
sidecar-e2e: image
	cd deploy/kubernetes && SIDECAR_E2E_IMAGE=$(abspath $(IMAGE)) $(GO) test -tags sidecare2e -count=1 -timeout 20m -v -run TestSidecarEndToEnd .

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

test: rootfs vet unit image-test manifests-test fuzz-short integration sidecar-e2e rtest client-python ts-test

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

# Install (PREFIX and DESTDIR as usual): the binary to $(PREFIX)/bin, where
# the R package finds it on PATH, and the R package into R's site library
# (RLIB: the first of R's .Library.site). Modes are set explicitly and R
# installs under umask 022, so a hardened umask leaves them readable. The
# Python client is a package: pip install clients/python (make client-python).
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
RLIB       ?= $(patsubst %/,%,$(shell Rscript -e 'cat(.Library.site[1])' 2>/dev/null))
SYSTEMDDIR ?= /etc/systemd/system
.PHONY: install install-bin install-r install-systemd
install: install-bin install-r

install-bin: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/securer-runc

install-r:
	@test -n "$(RLIB)" || { echo "no R site library found (is R installed? set RLIB=DIR)"; exit 1; }
	umask 022 && mkdir -p $(DESTDIR)$(RLIB) && R CMD INSTALL --library=$(DESTDIR)$(RLIB) r/securer

# The systemd unit (deploy/systemd), only when asked; its ExecStart names
# the installed binary.
install-systemd:
	umask 022 && mkdir -p $(DESTDIR)$(SYSTEMDDIR)
	sed 's|/usr/local/bin/securer-runc|$(BINDIR)/securer-runc|' deploy/systemd/securer-runc.service >$(DESTDIR)$(SYSTEMDDIR)/securer-runc.service
	chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/securer-runc.service
	@echo "installed $(DESTDIR)$(SYSTEMDDIR)/securer-runc.service: systemctl daemon-reload && systemctl enable --now securer-runc"

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

# The Python client (clients/python), installed by Debian's pip (setuptools
# and wheel from apt, nothing from an index) into a scratch dir, then its tests run
# against that copy: the codec's without a server, then, as root, the live
# ones against daemons they start themselves (each on its own socket, state
# dir and cgroup parent, checked empty and reaped after).
PYTHON ?= /usr/bin/python3
client-python: build rootfs
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp" $(CURDIR)/clients/python/build $(CURDIR)/clients/python/*.egg-info' EXIT && \
		$(PYTHON) -m pip install -q --root-user-action=ignore --no-deps --no-build-isolation --no-index --target "$$tmp" ./clients/python && \
		cp -r clients/python/tests "$$tmp/tests" && cd "$$tmp" && \
		SECURER_RUNC=$(CURDIR)/$(BIN) $(PYTHON) -m unittest discover -v -s tests -t .

# The TypeScript client (clients/typescript): compiled by tsc (a
# devDependency, installed from the committed lockfile by make deps) into
# its dist/; its tests run with node's own runner against a real daemon
# each test file starts (as root, its own --state and --cgroup-parent,
# checked empty and reaped after) and real containers.
TS_DIR := clients/typescript
ts-build:
	cd $(TS_DIR) && npx --no-install tsc -p .

ts-test: build rootfs ts-build
	cd $(TS_DIR) && SECURER_RUNC=$(CURDIR)/$(BIN) node --test test/*.test.mjs

# The TypeScript client's speed against bare Rscript in the same run
# (clients/typescript/bench/bench.mjs; BENCH_RUNS runs, 21 by default).
ts-bench: build rootfs ts-build
	cd $(TS_DIR) && SECURER_RUNC=$(CURDIR)/$(BIN) node bench/bench.mjs

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
	rm -rf bin $(TS_DIR)/dist integration.log integration-loaded-*.log crash-cycles.log churn.log soak.log hostile.log v2-full.log

# The R package's copy of the value codec, from bridge/r/values.R (the one
# source; bridge's TestRPackageValues fails when they differ).
.PHONY: rvalues
rvalues:
	$(GO) generate ./bridge/

# cgroup v2: a cgroup-v2-only guest (QEMU, software emulation, Debian's
# kernel) with this host's / as its read-only root; see scripts/v2-guest.sh
# and HARDENING.md ("cgroup v2"). v2-smoke: doctor, verdicts, limits, reap
# and the pod case; v2-sidecar: the sidecar end-to-end test, both modes;
# v2-test: the integration tests matching V2_RUN; v2-ci: the smoke, the
# sidecar and the tests CI runs, in one boot; v2-full: the whole suite
# (1-2 h).
V2_RUN ?= ^TestVerdict
V2_CI_RUN ?= ^(TestFaultMissingKernelFeature|TestAdversarialProcess|TestReapCgroups|TestCleanup|TestTotalLimits|TestVerdictAccounting)$$
.PHONY: v2-deps v2-smoke v2-test v2-ci v2-full v2-sidecar
v2-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static cpio

v2-smoke: rootfs
	scripts/v2-guest.sh smoke

v2-test: rootfs
	scripts/v2-guest.sh test '$(V2_RUN)'

v2-ci: rootfs image
	SIDECAR_E2E_IMAGE=$(abspath $(IMAGE)) scripts/v2-guest.sh ci '$(V2_CI_RUN)'

v2-sidecar: rootfs image
	SIDECAR_E2E_IMAGE=$(abspath $(IMAGE)) scripts/v2-guest.sh sidecar

v2-full: rootfs
	scripts/v2-guest.sh full 2>&1 | tee v2-full.log | grep -E '^(== |--- FAIL|FAIL|ok|panic)' ; test $${PIPESTATUS[0]} -eq 0
