package host

import (
	"context"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// replicas = N in the config reaches the supervisor, and editing it
// applies: the plugin is reloaded with that many instances.
func TestConfigReplicas(t *testing.T) {
	dir := t.TempDir()
	base := supervisorTOML("mode = \"inproc\"")
	hs := startHost(t, dir, base+"[plugins.j]\ndriver = \"json\"\nreplicas = 2\n", Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// The replicas start once the primary serves: wait for them.
	instances := func(want int) int {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			st, err := hs.h.Status("j")
			must(t, err)
			if len(st.Instances) == want {
				return want
			}
			select {
			case <-ctx.Done():
				return len(st.Instances)
			case <-tick.C:
			}
		}
	}
	if _, err := hs.h.Call(ctx, "j", "compact", []byte(`[ 1 ]`)); err != nil {
		t.Fatal(err)
	}
	if n := instances(2); n != 2 {
		t.Fatalf("replicas = 2: %d instances", n)
	}
	m := hs.rec.mark()
	writeFile(t, hs.cfg, base+"[plugins.j]\ndriver = \"json\"\nreplicas = 3\n")
	if e, _ := hs.rec.waitFor(t, m, supervisor.EventConfigApplied, ""); e.Error != "" {
		t.Fatalf("edit: %s", e.Error)
	}
	if n := instances(3); n != 3 {
		t.Fatalf("replicas edited to 3: %d instances", n)
	}
}
