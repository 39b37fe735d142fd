# plugvisor — see README.md. Every target works on a fresh machine with Go 1.26.
GO        ?= go
export GOTOOLCHAIN := local
export GOFLAGS     := -buildvcs=false
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run dev test test-go test-python cross bench soak fuzz lint fmt clean dist image

all: build

build:
	$(GO) build -o bin/plugvisor ./cmd/plugvisor

# The demo daemon on config.toml: edit a plugin under examples/, save, the new code serves.
run: build
	./bin/plugvisor dev -c config.toml

test: test-go test-python

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...

# Build and vet for every OS plugvisor supports: what only one OS can run
# lives in files behind its build tag (internal/proc, supervisor/ipc_*).
CROSS := darwin/arm64 darwin/amd64 windows/amd64 linux/arm64
cross:
	@set -e; for t in $(CROSS); do \
	  echo "== GOOS=$${t%/*} GOARCH=$${t#*/}"; \
	  GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build ./...; \
	  GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet ./...; \
	done

test-python:
	cd sdk/python && python3 -m unittest discover -s tests -t . -q
	cd examples/pydemo && PYTHONPATH=../../sdk/python python3 -m unittest -q test_main

# Benchmarks (testing.B): call round trip, pipelined calls, source stream,
# swap pause by state size; the Python SDK next to the Go SDK; builds;
# then the bench command's table against the clicks example.
# Run ../shared/anchors/ipcbench/run.sh beside it for the baselines.
bench: build
	$(GO) test -run '^$$' -bench . -count 1 ./supervisor/ ./transport/ ./sdk/python/ ./compiler/
	./bin/plugvisor bench

# Fuzzing: `make test` runs every target's seeds (testdata/fuzz/<Target>/
# and the f.Add seeds) as plain tests; `make fuzz` explores each target for
# FUZZTIME. go test -fuzz takes one package and one target per run, hence
# the package:Target list. A crash is saved under the package's
# testdata/fuzz/<Target>/ — fix it and commit that file as a seed.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./transport:FuzzParseMessage \
	./transport:FuzzParseCall \
	./transport:FuzzParseState \
	./transport:FuzzParseRestore \
	./transport:FuzzHello \
	./config:FuzzParse \
	./config:FuzzLocateKeys \
	./api:FuzzAPIBodies

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

soak:
	PLUGVISOR_SOAK=1000 $(GO) test -run 'TestSoak' -count=1 -timeout 30m -v ./supervisor/

lint:
	test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w .

clean:
	rm -rf bin .plugvisor remote-plugins dist

# Release builds (docs/deploy.md): static binaries (CGO_ENABLED=0) for every
# platform below, stamped with VERSION and REVISION, and dist/SHA256SUMS.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
LDFLAGS   := -s -w -X github.com/plugvisor/plugvisor/version.Version=$(VERSION) -X github.com/plugvisor/plugvisor/version.Revision=$(REVISION)

dist:
	rm -rf dist && mkdir -p dist
	set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; [ "$$os" = windows ] && ext=.exe; \
		echo "dist/plugvisor-$(VERSION)-$$os-$$arch$$ext"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o dist/plugvisor-$(VERSION)-$$os-$$arch$$ext ./cmd/plugvisor; \
	done
	cd dist && sha256sum plugvisor-* > SHA256SUMS
	@cat dist/SHA256SUMS

# Container images (deploy/container/Containerfile): the static daemon and
# the variant with python3, built with buildah or docker, whichever works
# (docker only when its daemon answers).
IMAGE ?= plugvisor
CONTAINER_TOOL ?= $(shell command -v buildah 2>/dev/null || { docker info >/dev/null 2>&1 && command -v docker; })

image:
	@if [ -z "$(CONTAINER_TOOL)" ]; then \
		echo "make image: skipped: neither buildah nor a running docker is available (install one, or set CONTAINER_TOOL)"; \
	else \
		set -e; \
		case "$(CONTAINER_TOOL)" in *buildah) b="$(CONTAINER_TOOL) bud";; *) b="$(CONTAINER_TOOL) build";; esac; \
		for target in static python; do \
			tag=$(IMAGE):$(VERSION); [ $$target = python ] && tag=$(IMAGE):$(VERSION)-python; \
			echo "$$b --target $$target -t $$tag"; \
			$$b -f deploy/container/Containerfile --target $$target \
				--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $$tag . ; \
		done; \
	fi
