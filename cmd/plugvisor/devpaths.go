package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
)

// zeroConfig builds the config of `plugvisor dev [PATH ...]`: each PATH (a
// Go plugin package, a plugin.json folder or a binary) served with the
// defaults, its state under the first folder's .plugvisor/ (or stateDir).
// With no PATH it returns nil when a config file is to be used instead:
// cfgPath was given or config.toml exists; else the working directory is
// the plugin.
func zeroConfig(paths []string, cfgPath string, cfgGiven bool, stateDir string) (*config.Config, error) {
	if len(paths) == 0 {
		if cfgGiven {
			return nil, nil
		}
		if _, err := os.Stat(cfgPath); err == nil {
			return nil, nil
		}
		paths = []string{"."}
	} else if cfgGiven {
		return nil, errors.New("pass either --config or plugin paths to dev, not both")
	}
	reg := config.Registry(builtin.Sources())
	var b strings.Builder
	names := map[string]string{}
	var home string
	for _, raw := range paths {
		abs, err := filepath.Abs(raw)
		if err != nil {
			return nil, err
		}
		d, err := config.ResolveDriver(abs, "", config.ModeProcess, reg)
		if err != nil {
			return nil, fmt.Errorf("dev %s: %w", raw, err)
		}
		if d.Kind != config.KindSource && d.Kind != config.KindCommand && d.Kind != config.KindBinary {
			return nil, fmt.Errorf("dev %s: a %s driver; dev takes a Go plugin package, a plugin.json folder or a binary", raw, d.Kind)
		}
		name := devName(abs, d.Kind)
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("dev: %s and %s are both named %q; serve them from a config.toml with distinct names", prev, raw, name)
		}
		names[name] = raw
		if home == "" {
			home = abs
			if d.Kind == config.KindBinary {
				home = filepath.Dir(abs)
			}
		}
		fmt.Fprintf(&b, "[plugins.%s]\ndriver = %q\n\n", name, abs)
	}
	if stateDir == "" {
		stateDir = filepath.Join(home, ".plugvisor")
	}
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	sup := fmt.Sprintf("[supervisor]\nstate_dir = %q\nbin_dir = %q\nremote_dir = %q\napi = \"127.0.0.1:0\"\n\n",
		stateDir, filepath.Join(stateDir, "bin"), filepath.Join(stateDir, "remote"))
	return config.Parse([]byte(sup+b.String()), home, reg)
}

// daemonConfig is the config a daemon runs: zero-config paths for dev,
// else the config file.
func daemonConfig(cmd *cobra.Command, f daemonFlags, args []string, dev bool) (*config.Config, error) {
	if dev {
		cfg, err := zeroConfig(args, f.config, cmd.Flags().Changed("config"), f.state)
		if cfg != nil || err != nil {
			return cfg, err
		}
	}
	return loadConfig(f.config)
}

var nameJunk = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// devName is a plugin's name: its manifest's name, else its folder's (or
// binary's) name made valid.
func devName(abs string, kind config.Kind) string {
	if kind == config.KindCommand {
		if m, err := config.ReadManifest(abs); err == nil && config.ValidName(m.Name) == nil {
			return m.Name
		}
	}
	name := nameJunk.ReplaceAllString(filepath.Base(abs), "-")
	name = strings.Trim(name, "-")
	if config.ValidName(name) != nil {
		name = "plugin-" + name
	}
	if config.ValidName(name) != nil {
		return "plugin"
	}
	return name
}

// devArgs lets dev take plugin paths and --state.
func devArgs(cmd *cobra.Command, f *daemonFlags) {
	cmd.Use = "dev [PATH ...]"
	cmd.Args = cobra.ArbitraryArgs
	cmd.Long += `

With PATHs (or with none and no config.toml here) dev needs no config:
each PATH — a Go plugin package, a folder with plugin.json, or a binary —
is served with the defaults, named after its manifest or its folder. State,
builds, the API address and token (api.addr, api.token: client commands
started in that folder find the daemon by them) go to the first PATH's
.plugvisor/ folder, or --state.
The API listens on a free loopback port unless --api says otherwise.`
	cmd.Flags().StringVar(&f.state, "state", "", "dev PATH: state folder (default: the first PATH's .plugvisor/)")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "show plugvisor's own lines only, not the plugins' output")
}

// folderDaemon is the [supervisor] of a config-less daemon (dev PATH)
// serving the working directory: its state, address (api.addr) and token
// are in ./.plugvisor. nil when no such daemon wrote its address here.
func folderDaemon() *config.Supervisor {
	dir, err := filepath.Abs(".plugvisor")
	if err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, api.AddrFile)); err != nil {
		return nil
	}
	s := config.DefaultSupervisor()
	s.StateDir, s.API = dir, "127.0.0.1:0"
	return &s
}
