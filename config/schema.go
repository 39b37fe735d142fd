package config

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The schema is checked by walking the generic decoded document rather than
// by toml's struct decoding: that way every problem (not just the first) is
// reported, with the key's line and a message that says what is accepted.

var (
	topKeys        = []string{"supervisor", "plugins", "pipeline"}
	supervisorKeys = keysOf(supervisorSettings) // settings.go

	pluginKeys   = []string{"driver", "checksum", "update", "config", "build", "env", "submodules", "env_inherit", "required", "replicas"}
	buildKeys    = []string{"flags", "tags", "env"}
	pipelineKeys = []string{"name", "source", "functions", "sink", "on_error", "dead_letter", "retries"}

	checksumRe = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)
	envKeyRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

type parser struct {
	file  string
	lines keyLines
	errs  []*Error
}

func parse(data []byte, file, baseDir string, builtins Registry) (*Config, error) {
	base := absBase(baseDir)
	doc, err := decodeDoc(data, file)
	if err != nil {
		return nil, err
	}
	p := &parser{file: file, lines: locateKeys(string(data))}
	cfg := &Config{Dir: base, Supervisor: DefaultSupervisor(), Plugins: map[string]*Plugin{}}

	for _, k := range slices.Sorted(maps.Keys(doc)) {
		switch k {
		case "supervisor", "plugins", "pipeline":
		default:
			p.unknown([]string{k}, topKeys)
		}
	}
	if v, ok := doc["supervisor"]; ok {
		p.supervisor([]string{"supervisor"}, v, &cfg.Supervisor, base)
	} else {
		p.supervisor([]string{"supervisor"}, map[string]any{}, &cfg.Supervisor, base)
	}
	if v, ok := doc["plugins"]; ok {
		if tbl, ok := p.table([]string{"plugins"}, v); ok {
			for _, name := range slices.Sorted(maps.Keys(tbl)) {
				path := []string{"plugins", name}
				if err := ValidName(name); err != nil {
					p.errorf(path, "%v", err)
					continue
				}
				if pl := p.plugin(path, name, tbl[name], cfg, builtins); pl != nil {
					cfg.Plugins[name] = pl
				}
			}
		}
	}
	p.externalPlugins(doc, cfg) // config/external.go
	if v, ok := doc["pipeline"]; ok {
		p.pipelines([]string{"pipeline"}, v, cfg)
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, joinErrors(p.errs)
	}
	return cfg, nil
}

func (p *parser) errorf(path []string, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: p.lines.line(path), Key: pathString(path), Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) wrap(path []string, err error) {
	p.errs = append(p.errs, &Error{File: p.file, Line: p.lines.line(path), Key: pathString(path), Msg: err.Error(), Err: err})
}

// UnixScheme prefixes an API address that is a Unix socket path.
const UnixScheme = "unix://"

// maxUnixPath is the longest socket path Linux and macOS accept (sun_path).
const maxUnixPath = 103

// checkAddr accepts "host:port" with a numeric port (host may be empty) or
// "unix://PATH".
func checkAddr(s string) error {
	if rest, ok := strings.CutPrefix(s, UnixScheme); ok {
		switch {
		case rest == "":
			return fmt.Errorf("%q names no socket — write \"unix:///run/plugvisor/api.sock\"", s)
		case len(rest) > maxUnixPath:
			return fmt.Errorf("%q: a socket path is limited to %d bytes — pick a shorter one", s, maxUnixPath)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("%q is not a listen address — write host:port, e.g. \"127.0.0.1:9081\", or \"unix:///path/api.sock\"", s)
	}
	return nil
}

func (p *parser) plugin(path []string, name string, v any, cfg *Config, builtins Registry) *Plugin {
	t, ok := p.table(path, v)
	if !ok {
		return nil
	}
	pl := &Plugin{Name: name, Config: map[string]any{}, Env: map[string]string{}, Build: Build{Env: map[string]string{}}}
	good := true
	for _, k := range slices.Sorted(maps.Keys(t)) {
		kp, v := child(path, k), t[k]
		n := len(p.errs)
		switch k {
		case "driver":
			if s, ok := p.str(kp, v); ok {
				pl.Driver = s
				d, err := ResolveDriver(s, cfg.Dir, cfg.Supervisor.Mode, builtins)
				if err != nil {
					p.wrap(kp, err)
				}
				pl.Resolved = d
			}
		case "checksum":
			if s, ok := p.str(kp, v); ok {
				if !checksumRe.MatchString(s) {
					p.errorf(kp, "%q is not a checksum — write \"sha256:\" followed by 64 hex digits (sha256sum prints them)", s)
				}
				pl.Checksum = strings.ToLower(s)
			}
		case "update":
			if s, ok := p.str(kp, v); ok {
				if s != UpdateManual {
					if d, err := time.ParseDuration(s); err != nil || d <= 0 {
						p.errorf(kp, "%q: want a positive duration such as \"10m\" (poll for new commits) or %q (fetch only on reload)", s, UpdateManual)
					}
				}
				pl.Update = s
			}
		case "config":
			if c, ok := p.table(kp, v); ok {
				pl.Config = c
			}
		case "build":
			p.build(kp, v, &pl.Build)
		case "env":
			if m, ok := p.strMap(kp, v); ok {
				pl.Env = m
			}
		case "submodules":
			if b, ok := v.(bool); ok {
				pl.Submodules = b
			} else {
				p.errorf(kp, "want true or false, got %s", tomlType(v))
			}
		case "env_inherit":
			if names, ok := p.envNames(kp, v); ok {
				pl.EnvInherit = names
			}
		case "replicas":
			p.replicas(kp, v, pl)
		case "required":
			if b, ok := v.(bool); ok {
				pl.Optional = !b
			} else {
				p.errorf(kp, "want true or false (false: /readyz does not wait for this plugin), got %s", tomlType(v))
			}
		default:
			p.unknown(kp, pluginKeys)
		}
		if len(p.errs) > n {
			good = false
		}
	}
	if _, ok := t["driver"]; !ok {
		p.errorf(path, "driver is missing — %s", acceptedForms)
		return pl
	}
	if !good { // already reported; the checks below would only add noise
		return pl
	}
	// Keys that only mean something for some drivers.
	kind := pl.Resolved.Kind
	if pl.Update != "" && kind != KindRemote {
		p.errorf(child(path, "update"), "applies only to remote (go-getter) drivers; this driver is %s", kind)
	}
	if kind == KindRemote && pl.Update == "" {
		pl.Update = UpdateManual
	}
	if pl.Submodules && kind != KindRemote {
		p.errorf(child(path, "submodules"), "applies only to remote (go-getter) drivers; this driver is %s", kind)
	}
	if pl.Checksum != "" && kind != KindBinary && kind != KindRemote {
		p.errorf(child(path, "checksum"), "applies only to binary and remote drivers; this driver is %s", kind)
	}
	if _, ok := t["build"]; ok && (kind == KindBinary || kind == KindCommand) {
		p.errorf(child(path, "build"), "applies only to Go drivers (source, remote, builtin); this driver is %s", kind)
	}
	return pl
}

func (p *parser) build(path []string, v any, b *Build) {
	t, ok := p.table(path, v)
	if !ok {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		kp, v := child(path, k), t[k]
		switch k {
		case "flags":
			if l, ok := p.strList(kp, v); ok {
				for _, f := range l {
					if f == "-o" || strings.HasPrefix(f, "-o=") || f == "--o" || strings.HasPrefix(f, "--o=") {
						p.errorf(kp, "%q: plugvisor chooses the output path; remove it", f)
					}
				}
				b.Flags = l
			}
		case "tags":
			if l, ok := p.strList(kp, v); ok {
				for _, tag := range l {
					if tag == "" || strings.ContainsAny(tag, ", \t") {
						p.errorf(kp, "%q is not a build tag — one tag per string, without commas or spaces", tag)
					}
				}
				b.Tags = l
			}
		case "env":
			if m, ok := p.strMap(kp, v); ok {
				b.Env = m
			}
		default:
			p.unknown(kp, buildKeys)
		}
	}
}
