// Command filesink is an example sink plugin: it appends each item as a
// JSON line to the file named by its `path` config.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/plugvisor/plugvisor/sdk"
)

func main() { sdk.Serve(plugin) }

// plugin is what main serves; the tests run it with sdktest.
var plugin = sdk.Plugin{
	Name: "filesink", Version: "1.0.0",
	Sinks: map[string]sdk.NewSink{
		"append":  func() sdk.Sink { return &appendSink{} },
		"discard": func() sdk.Sink { return discard{} },
	},
}

type appendSink struct {
	path string
	f    *os.File
}

func (s *appendSink) Configure(props map[string]any) error {
	p, ok := props["path"].(string)
	if !ok || p == "" {
		return fmt.Errorf(`filesink needs a "path" in [plugins.NAME.config]`)
	}
	s.path = p
	return nil
}

func (s *appendSink) Open(sdk.Context) error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

func (s *appendSink) Collect(ctx sdk.Context, item any) error {
	raw, _ := item.(json.RawMessage)
	line := append(append([]byte(nil), raw...), '\n')
	if _, err := s.f.Write(line); err != nil {
		return err
	}
	_, err := ctx.State().IncrCounter("lines", 1)
	return err
}

func (s *appendSink) Close(sdk.Context) error { return s.f.Close() }

// discard collects and forgets: the trivial sink `plugvisor bench` uses
// to measure pipelines rather than a disk.
type discard struct{}

func (discard) Configure(map[string]any) error { return nil }
func (discard) Open(sdk.Context) error         { return nil }
func (discard) Collect(sdk.Context, any) error { return nil }
func (discard) Close(sdk.Context) error        { return nil }
