package config

import (
	"testing"
)

func TestByteBoundsAndSubmodules(t *testing.T) {
	f := newFixture(t)
	cfg, err := Parse([]byte("[supervisor]\nqueue_bytes = 1048576\nrecv_queue_bytes = 2097152\nfetch_max_bytes = 104857600\n"+
		"[plugins.geo]\ndriver = \"git::https://example.com/geo.git\"\nsubmodules = true\n"), f.dir, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Supervisor
	if s.QueueBytes != 1<<20 || s.RecvQueueBytes != 2<<20 || s.FetchMaxBytes != 100<<20 || !cfg.Plugins["geo"].Submodules {
		t.Fatalf("parsed %+v, submodules %v", s, cfg.Plugins["geo"].Submodules)
	}
	d, err := Parse(nil, f.dir, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Supervisor; s.QueueBytes != DefaultQueueBytes || s.RecvQueueBytes != DefaultRecvQueueBytes || s.FetchMaxBytes != DefaultFetchMaxBytes {
		t.Fatalf("defaults: %+v", s)
	}

	for _, c := range []struct {
		name, src, key string
		line           int
		contains       []string
	}{
		{"queue_bytes small", "[supervisor]\nqueue_bytes = 100\n", "supervisor.queue_bytes", 2, []string{"want 65536 to"}},
		{"recv_queue_bytes type", "[supervisor]\nrecv_queue_bytes = \"32MiB\"\n", "supervisor.recv_queue_bytes", 2, []string{"want an integer (bytes)"}},
		{"fetch_max_bytes zero", "[supervisor]\nfetch_max_bytes = 0\n", "supervisor.fetch_max_bytes", 2, []string{"out of range"}},
		{"submodules type", "[plugins.a]\ndriver = \"github.com/x/y\"\nsubmodules = \"yes\"\n", "plugins.a.submodules", 3, []string{"true or false"}},
		{"submodules on source", "[plugins.a]\ndriver = \"./examples/counter\"\nsubmodules = true\n", "plugins.a.submodules", 3, []string{"only to remote"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, parseErr(t, c.src, f), c.line, c.key, c.contains...)
		})
	}
}
