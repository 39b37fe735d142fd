package host

import "testing"

// A source or sink scope whose instance no configured pipeline names is
// orphaned (a pipeline removed or renamed); function scopes and the
// instances in use are not.
func TestOrphanedScope(t *testing.T) {
	in := map[string]bool{"host": true, "demo": true, "demo.dead_letter": true}
	for scope, want := range map[string]bool{
		"functions":                       false,
		"function/double":                 false,
		"source/ticks/demo":               false,
		"sink/append/demo.dead_letter":    false,
		"source/ticks/host":               false,
		"source/ticks/old-name":           true,
		"sink/append/renamed":             true,
		"source/ticks":                    false, // not an instance scope
		"sink/append/demo/with/slashes/x": true,
	} {
		if got := orphanedScope(scope, in); got != want {
			t.Errorf("orphanedScope(%q) = %v, want %v", scope, got, want)
		}
	}
}
