package config

// New returns a config holding the defaults, for a host that builds its
// config in Go rather than TOML: set Supervisor fields (Mode before adding
// builtins), add plugins with AddPlugin and pipelines with AddPipeline,
// then Validate. dir is the folder relative paths resolve against ("" =
// the working directory). Supervisor.API "" means no HTTP API (a Host never
// serves one; the daemon then serves none).
func New(dir string) *Config {
	return &Config{Dir: absBase(dir), Supervisor: DefaultSupervisor(), Plugins: map[string]*Plugin{}}
}

// AddPlugin adds plugin name with driver (resolved like a [plugins.NAME]
// table: builtin word, path or remote) and its config table, or says why
// not. builtins is the registry for one-word drivers (builtin.Sources()).
func (c *Config) AddPlugin(name, driver string, pluginConfig map[string]any, builtins Registry) (*Plugin, error) {
	if c.Plugins == nil {
		c.Plugins = map[string]*Plugin{}
	}
	p, err := c.NewPlugin(name, driver, pluginConfig, builtins)
	if err != nil {
		return nil, err
	}
	c.Plugins[name] = p
	return p, nil
}

// AddPipeline adds a pipeline, checked like a [[pipeline]] table: a unique
// name, "plugin.symbol" references to configured plugins, a sink or at
// least one function.
func (c *Config) AddPipeline(pl Pipeline) error {
	scratch := &Config{Plugins: c.Plugins}
	p := &parser{}
	all := append(append([]Pipeline{}, c.Pipelines...), pl)
	p.pipelines([]string{"pipeline"}, pipelineMaps(all), scratch)
	if err := joinErrors(p.errs); err != nil {
		return err
	}
	c.Pipelines = append(c.Pipelines, pl)
	return nil
}

// Validate checks a config built in code with the rules Parse applies to
// the file — the [supervisor] values and their relations, the plugins'
// names, the pipelines' references — and makes the folders absolute
// (relative ones are taken from Dir). Errors name the TOML key
// ("supervisor.max_wait") of the field.
func (c *Config) Validate() error {
	p := &parser{}
	s := c.Supervisor
	p.supervisor([]string{"supervisor"}, supervisorMap(s), &s, c.Dir)
	for _, name := range sortedKeys(c.Plugins) {
		pl := c.Plugins[name]
		if err := ValidName(name); err != nil {
			p.errorf([]string{"plugins", name}, "%v", err)
		} else if pl == nil || pl.Name != name || pl.Resolved.Kind == "" {
			p.errorf([]string{"plugins", name}, "not made by AddPlugin or NewPlugin (its driver is not resolved) — add it with Config.AddPlugin")
		}
	}
	p.pipelines([]string{"pipeline"}, pipelineMaps(c.Pipelines), &Config{Plugins: c.Plugins})
	if err := joinErrors(p.errs); err != nil {
		return err
	}
	c.Supervisor.BinDir, c.Supervisor.RemoteDir, c.Supervisor.StateDir = s.BinDir, s.RemoteDir, s.StateDir
	return nil
}

// supervisorMap is s as the TOML table the parser checks.
func supervisorMap(s Supervisor) map[string]any {
	d := func(v Duration) string { return v.String() }
	return map[string]any{
		"bin_dir": s.BinDir, "remote_dir": s.RemoteDir, "state_dir": s.StateDir, "api": s.API,
		"debounce": d(s.Debounce), "max_wait": d(s.MaxWait), "mode": s.Mode, "poll": s.Poll,
		"start_timeout": d(s.StartTimeout), "drain_timeout": d(s.DrainTimeout), "snapshot_timeout": d(s.SnapshotTimeout),
		"restore_timeout": d(s.RestoreTimeout), "stop_grace": d(s.StopGrace), "heartbeat_interval": d(s.HeartbeatInterval),
		"heartbeat_timeout": d(s.HeartbeatTimeout), "checkpoint_interval": d(s.CheckpointInterval),
		"backoff_min": d(s.BackoffMin), "backoff_max": d(s.BackoffMax),
		"max_frame": int64(s.MaxFrame), "keep_builds": int64(s.KeepBuilds), "log_lines": int64(s.LogLines),
	}
}

func pipelineMaps(pls []Pipeline) []map[string]any {
	out := make([]map[string]any, len(pls))
	for i, pl := range pls {
		m := map[string]any{"name": pl.Name, "source": pl.Source}
		if len(pl.Functions) > 0 {
			fns := make([]any, len(pl.Functions))
			for j, f := range pl.Functions {
				fns[j] = f
			}
			m["functions"] = fns
		}
		if pl.Sink != "" {
			m["sink"] = pl.Sink
		}
		out[i] = m
	}
	return out
}
