package config_test

import (
	"errors"
	"fmt"

	"github.com/plugvisor/plugvisor/config"
)

func ExampleParse() {
	// The host supplies its builtins; "" means their sources are not
	// available, so they run in process whatever the mode.
	builtins := config.Registry{"json": "", "upper": ""}
	cfg, err := config.Parse([]byte(`
[supervisor]
debounce = "50ms"

[plugins.json]
driver = "json"

[plugins.geo]
driver = "git::https://example.com/acme/geo.git?ref=v1.2.0"
update = "10m"

[[pipeline]]
name = "demo"
source = "geo.points"
functions = ["json.encode"]
`), "/srv/plugvisor", builtins)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Supervisor.Debounce, cfg.Supervisor.MaxWait, cfg.Supervisor.BinDir)
	for _, name := range []string{"geo", "json"} {
		p := cfg.Plugins[name]
		every, _ := p.UpdateInterval()
		fmt.Println(name, p.Resolved.Kind, every)
	}
	fmt.Println(cfg.Pipelines[0].Source, "→", cfg.Pipelines[0].Functions)
	// Output:
	// 50ms 2s /srv/plugvisor/bin
	// geo remote 10m0s
	// json builtin 0s
	// geo.points → [json.encode]
}

func ExampleError() {
	_, err := config.Parse([]byte(`
[supervisor]
debounce = "100"
`), "/srv/plugvisor", nil)
	var e *config.Error
	if errors.As(err, &e) {
		fmt.Println(e.Line, e.Key)
	}
	fmt.Println(err)
	// Output:
	// 3 supervisor.debounce
	// line 3: supervisor.debounce: "100" has no unit — write it like "100ms" or "100s"
}
