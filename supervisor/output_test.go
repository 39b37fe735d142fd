package supervisor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A plugin's structured log line is logged with its own level and fields
// as one JSON object (not JSON inside a string, no duplicate keys), and
// reaches followers as printed.
func TestRecordLogsPluginLinesAsJSON(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).With().Str("plugin", "demo").Logger()
	s := &Supervisor{}
	p := &Plugin{sup: s, name: "demo", logs: newRing(10), log: log}
	feed := s.FollowOutput(4)
	defer feed.Close()
	line := `{"level":"warn","plugin":"demo","generation":3,"free_mb":3,"time":"2026-01-02T03:04:05Z","message":"disk low"}`
	p.output(3, "stderr", line)
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
	p.output(3, "stdout", "plain")
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || got["message"] != "plain" || got["level"] != "info" {
		t.Fatalf("plain line logged as %s", buf.String())
	}
}
