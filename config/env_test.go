package config

import (
	"reflect"
	"strings"
	"testing"
)

// env_inherit: a [supervisor] default, a plugin list that overrides it
// (empty: none), and names checked.
func TestEnvInherit(t *testing.T) {
	src := `
[supervisor]
env_inherit = ["AWS_PROFILE", "HTTP_PROXY"]

[plugins.a]
driver = "/bin/sh"

[plugins.b]
driver = "/bin/sh"
env_inherit = []

[plugins.c]
driver = "/bin/sh"
env_inherit = ["GOPATH"]
`
	cfg, err := Parse([]byte(src), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Supervisor.EnvInherit; !reflect.DeepEqual(got, []string{"AWS_PROFILE", "HTTP_PROXY"}) {
		t.Fatalf("[supervisor] env_inherit = %q", got)
	}
	if a, b, c := cfg.Plugins["a"].EnvInherit, cfg.Plugins["b"].EnvInherit, cfg.Plugins["c"].EnvInherit; a != nil || b == nil || len(b) != 0 || !reflect.DeepEqual(c, []string{"GOPATH"}) {
		t.Fatalf("plugin env_inherit: a=%#v b=%#v c=%#v", a, b, c)
	}
	// Dropping a plugin's list (back to the default) is a change.
	cfg2, err := Parse([]byte(strings.Replace(src, "env_inherit = []\n", "", 1)), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !pluginChanged(cfg.Plugins["b"], cfg2.Plugins["b"]) {
		t.Fatal("env_inherit [] → unset not seen as a change")
	}
	_, err = Parse([]byte("[supervisor]\nenv_inherit = [\"NOT-A-NAME\"]\n"), t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), `"NOT-A-NAME" is not an environment variable name`) {
		t.Fatalf("bad name: %v", err)
	}
}
