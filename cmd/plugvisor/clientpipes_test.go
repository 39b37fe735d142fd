package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/plugvisor/plugvisor/supervisor"
)

// status prints a pipelines section from GET /pipelines, and nothing when
// the daemon runs none.
func TestStatusPrintsPipelines(t *testing.T) {
	list := []supervisor.PipelineStatus{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pipelines" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()
	c, err := newClient(clientFlags{api: srv.URL, token: "t"}, false)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printPipelines(context.Background(), c, &out)
	if out.Len() != 0 {
		t.Fatalf("no pipelines, printed:\n%s", out.String())
	}
	list = append(list, supervisor.PipelineStatus{Name: "demo", State: "running", In: 120, Out: 100, InFlight: 15, Dropped: 5,
		Throughput: 2500, LastError: "transform.double: boom\nmore", Stages: []supervisor.StageStatus{
			{Stage: "source", Ref: "counter.ticks"}, {Stage: "function1", Ref: "transform.double"}, {Stage: "sink", Ref: "filesink.append"}}})
	printPipelines(context.Background(), c, &out)
	for _, want := range []string{"PIPELINE", "IN FLIGHT", "DROPPED", "demo", "running",
		"counter.ticks → transform.double → filesink.append", " 120 ", " 100 ", " 15 ", "2500", "transform.double: boom"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "more") {
		t.Errorf("status printed more than the error's first line:\n%s", out.String())
	}
}
