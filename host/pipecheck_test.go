package host

import (
	"strings"
	"testing"

	"github.com/plugvisor/plugvisor/supervisor"
)

// A live config edit whose pipeline names a symbol the serving plugin
// lacks (misspelled, or of the wrong kind) is refused whole, with a
// suggestion, and changes nothing.
func TestConfigEditRefusesPipelineWithMissingSymbol(t *testing.T) {
	dir := t.TempDir()
	base := supervisorTOML("mode = \"inproc\"") + "[plugins.a]\ndriver = \"json\"\n"
	hs := startHost(t, dir, base, Options{})
	m := hs.rec.mark()
	writeFile(t, hs.cfg, base+"[plugins.b]\ndriver = \"json\"\n\n[[pipeline]]\nname = \"p\"\nsource = \"a.pretty\"\nfunctions = [\"a.compatc\"]\n")
	e, _ := hs.rec.waitFor(t, m, supervisor.EventConfigApplied, "")
	for _, want := range []string{"nothing changed", `plugin a has no function "compatc" — did you mean "a.compact"?`,
		`plugin a has no source "pretty" (a.pretty is a function, and source needs a source)`} {
		if !strings.Contains(e.Error, want) {
			t.Errorf("config.applied error:\n%s\nwant it to contain: %s", e.Error, want)
		}
	}
	if _, err := hs.h.Status("b"); err == nil {
		t.Error("the refused edit still added plugin b")
	}
	if got := hs.h.Pipelines(); len(got) != 0 {
		t.Errorf("the refused edit started pipelines: %+v", got)
	}
}
