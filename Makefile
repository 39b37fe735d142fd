# plugvisor — see README.md. Every target works on a fresh machine with Go 1.26.
GO        ?= go
export GOTOOLCHAIN := local
export GOFLAGS     := -buildvcs=false
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run dev test test-go test-python bench soak lint fmt clean

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

test-python:
	cd sdk/python && python3 -m unittest discover -s tests -t . -q
	cd examples/pydemo && PYTHONPATH=../../sdk/python python3 -m unittest -q test_main

# Benchmarks (testing.B): call round trip, pipelined calls, source stream,
# swap pause by state size; the Python SDK next to the Go SDK; builds;
# then the bench command's table against the clicks example.
# Run ../shared/anchors/ipcbench/run.sh beside it for the baselines.
bench: build
	$(GO) test -run '^$$' -bench . -count 1 ./supervisor/ ./sdk/python/ ./compiler/
	./bin/plugvisor bench

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
