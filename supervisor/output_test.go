package supervisor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/config"
)

// A plugin's structured log line is logged with its own level and fields
// as one JSON object (not JSON inside a string, no duplicate keys), and
// reaches followers as printed.
func TestRecordLogsPluginLinesAsJSON(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	s, err := New(Options{Supervisor: config.Supervisor{StateDir: t.TempDir()}, Logger: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.store.close()
	p := newPlugin(s, "demo", Spec{})
	out := p.outputOf(3)
	feed := s.FollowOutput(4)
	defer feed.Close()
	line := `{"level":"warn","plugin":"demo","generation":3,"free_mb":3,"time":"2026-01-02T03:04:05Z","message":"disk low"}`
	out("stderr", line)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, buf.String())
	}
	if got["level"] != "warn" || got["message"] != "disk low" || got["free_mb"] != 3.0 || got["plugin_time"] == nil {
		t.Fatalf("logged %v", got)
	}
	if n := strings.Count(buf.String(), `"plugin":`); n != 1 {
		t.Fatalf("%d plugin keys in %s", n, buf.String())
	}
	if l := <-feed.C; l.Plugin != "demo" || l.Line != line || l.Generation != 3 {
		t.Fatalf("followed %+v", l)
	}
	buf.Reset()
	out("stdout", "plain")
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || got["message"] != "plain" || got["level"] != "info" {
		t.Fatalf("plain line logged as %s", buf.String())
	}
}
