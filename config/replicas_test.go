package config

import "testing"

func TestReplicas(t *testing.T) {
	f := newFixture(t)
	cfg, err := Parse([]byte("[plugins.a]\ndriver = \"./examples/counter\"\nreplicas = 3\n[plugins.b]\ndriver = \"./examples/counter\"\n"), f.dir, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := cfg.Plugins["a"].ReplicaCount(), cfg.Plugins["b"].ReplicaCount(); a != 3 || b != 1 {
		t.Fatalf("replicas: a %d (want 3), b %d (want the default 1)", a, b)
	}
	changed := *cfg.Plugins["b"]
	changed.Replicas = 2
	if !pluginChanged(cfg.Plugins["b"], &changed) {
		t.Error("a change of replicas is not a change of the plugin: it would never take effect")
	}
	one := *cfg.Plugins["b"]
	one.Replicas = 1
	if pluginChanged(cfg.Plugins["b"], &one) {
		t.Error("replicas = 1 written out is a change from the default")
	}
	for _, c := range []struct{ name, val, want string }{
		{"zero", "0", "want 1 to 64"},
		{"too many", "65", "out of range"},
		{"string", `"3"`, "got a string"},
		{"float", "2.5", "whole number"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "[plugins.geo]\ndriver = \"./examples/counter\"\nreplicas = " + c.val + "\n"
			wantErr(t, parseErr(t, src, f), 3, "plugins.geo.replicas", "plugin geo", "replicas", c.want)
		})
	}
}
