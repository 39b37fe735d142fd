# plugvisor — see README.md. Every target works on a fresh machine with Go 1.26.
GO        ?= go
export GOTOOLCHAIN := local
export GOFLAGS     := -buildvcs=false
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run dev test test-go test-python cross bench soak fuzz lint fmt clean

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

# Benchmarks (testing.B): call round trip, pipelined calls, source stream,
# swap pause by state size; the Python SDK next to the Go SDK; builds;
# then the bench command's table against the clicks example.
# Run ../shared/anchors/ipcbench/run.sh beside it for the baselines.
bench: build
	$(GO) test -run '^$$' -bench . -count 1 ./supervisor/ ./sdk/python/ ./compiler/
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
	rm -rf bin .plugvisor remote-plugins
