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
	supervisorKeys = []string{"bin_dir", "remote_dir", "state_dir", "api", "debounce", "max_wait", "mode", "poll",
		"start_timeout", "drain_timeout", "snapshot_timeout", "restore_timeout", "stop_grace",
		"heartbeat_interval", "heartbeat_timeout", "checkpoint_interval", "backoff_min", "backoff_max",
		"max_frame", "keep_builds", "log_lines",
		"api_hosts", "api_tls_cert", "api_tls_key", "api_client_ca", "api_max_conns", "call_timeout",
		"queue_bytes", "recv_queue_bytes", "fetch_max_bytes",
		"log_bytes_per_sec", "log_lines_per_sec", "log_line_max", "env_inherit",
		"config_check", "shutdown_timeout", "api_token_file",
		"listen", "tls_cert", "tls_key", "tls_client_ca", "remote_heartbeat_interval", "remote_heartbeat_timeout"}
	pluginKeys   = []string{"driver", "checksum", "update", "config", "build", "env", "submodules", "env_inherit", "required"}
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

// unknown reports a key the schema does not have, suggesting a near one.
func (p *parser) unknown(path []string, known []string) {
	last := path[len(path)-1]
	msg := fmt.Sprintf("unknown key %q", pathString(path))
	if s := closest(last, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	msg += " — known keys: " + strings.Join(known, ", ")
	if len(path) == 1 {
		msg += " (tables [supervisor], [plugins.NAME], [[pipeline]])"
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: p.lines.line(path), Key: pathString(path), Msg: msg, keyInMsg: true})
}

// closest returns the known key within edit distance 2 of k, if any.
func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := EditDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance of a and b, for "did you mean"
// suggestions (config keys here, pipeline symbols in host).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func child(path []string, k string) []string {
	return append(append(make([]string, 0, len(path)+1), path...), k)
}

// tomlType names a decoded value's TOML type for messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("%T", v)
}

func (p *parser) table(path []string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		p.errorf(path, "want a table, got %s", tomlType(v))
	}
	return t, ok
}

func (p *parser) str(path []string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.errorf(path, "want a string, got %s", tomlType(v))
	}
	return s, ok
}

func (p *parser) strList(path []string, v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		p.errorf(path, "want an array of strings, got %s", tomlType(v))
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.errorf(child(path, index(i)), "want a string, got %s", tomlType(e))
			return nil, false
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, true
	}
	return out, true
}

// envNames reads a list of environment variable names; an empty list is
// empty, not nil (it overrides a default).
func (p *parser) envNames(path []string, v any) ([]string, bool) {
	names, ok := p.strList(path, v)
	if !ok {
		return nil, false
	}
	for i, n := range names {
		if !envKeyRe.MatchString(n) {
			p.errorf(child(path, index(i)), "%q is not an environment variable name (letters, digits and '_', not starting with a digit)", n)
			return nil, false
		}
	}
	if names == nil {
		names = []string{}
	}
	return names, true
}

func (p *parser) strMap(path []string, v any) (map[string]string, bool) {
	t, ok := p.table(path, v)
	if !ok {
		return nil, false
	}
	out := make(map[string]string, len(t))
	good := true
	for _, k := range slices.Sorted(maps.Keys(t)) {
		kp := child(path, k)
		if !envKeyRe.MatchString(k) {
			p.errorf(kp, "%q is not an environment variable name (letters, digits and '_', not starting with a digit)", k)
			good = false
			continue
		}
		s, ok := t[k].(string)
		if !ok {
			p.errorf(kp, "want a string, got %s (quote it)", tomlType(t[k]))
			good = false
			continue
		}
		out[k] = s
	}
	return out, good
}

func (p *parser) duration(path []string, v any, dst *Duration, allowZero bool) {
	s, ok := v.(string)
	if !ok {
		p.errorf(path, "want a duration string such as \"100ms\", \"2s\" or \"1m30s\", got %s", tomlType(v))
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			p.errorf(path, "%q has no unit — write it like \"%sms\" or \"%ss\"", s, s, s)
		} else {
			p.errorf(path, "%q is not a duration — write it like \"100ms\", \"2s\" or \"1m30s\"", s)
		}
		return
	}
	if d < 0 || d == 0 && !allowZero {
		p.errorf(path, "%q: want a positive duration", s)
		return
	}
	dst.Duration = d
}

func (p *parser) integer(path []string, v any, dst *int, lo, hi int64, unit string) {
	n, ok := v.(int64)
	if !ok {
		p.errorf(path, "want an integer (%s), got %s", unit, tomlType(v))
		return
	}
	if n < lo || n > hi {
		p.errorf(path, "%d is out of range — want %d to %d %s", n, lo, hi, unit)
		return
	}
	*dst = int(n)
}

func (p *parser) supervisor(path []string, v any, s *Supervisor, base string) {
	t, ok := p.table(path, v)
	if !ok {
		return
	}
	durations := map[string]*Duration{
		"max_wait": &s.MaxWait, "start_timeout": &s.StartTimeout, "drain_timeout": &s.DrainTimeout,
		"snapshot_timeout": &s.SnapshotTimeout, "restore_timeout": &s.RestoreTimeout, "stop_grace": &s.StopGrace,
		"heartbeat_interval": &s.HeartbeatInterval, "heartbeat_timeout": &s.HeartbeatTimeout,
		"checkpoint_interval": &s.CheckpointInterval, "backoff_min": &s.BackoffMin, "backoff_max": &s.BackoffMax,
		"call_timeout": &s.CallTimeout,
	}
	dirs := map[string]*string{"bin_dir": &s.BinDir, "remote_dir": &s.RemoteDir, "state_dir": &s.StateDir,
		"api_tls_cert": &s.APITLSCert, "api_tls_key": &s.APITLSKey, "api_client_ca": &s.APIClientCA}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		kp, v := child(path, k), t[k]
		if d, ok := durations[k]; ok {
			p.duration(kp, v, d, false)
			continue
		}
		if d, ok := dirs[k]; ok {
			if str, ok := p.str(kp, v); ok {
				if str == "" {
					p.errorf(kp, "want a folder path, got an empty string")
				} else {
					*d = str
				}
			}
			continue
		}
		switch k {
		case "api":
			if str, ok := p.str(kp, v); ok {
				if str == "" { // no HTTP API
					s.API = ""
				} else if err := checkAddr(str); err != nil {
					p.errorf(kp, "%v", err)
				} else {
					s.API = str
				}
			}
		case "debounce":
			p.duration(kp, v, &s.Debounce, true)
		case "mode":
			if str, ok := p.str(kp, v); ok {
				if str != ModeProcess && str != ModeInproc {
					p.errorf(kp, "unknown mode %q — want %q (builtins run out of process and hot-reload) or %q (builtins run inside the host)",
						str, ModeProcess, ModeInproc)
				} else {
					s.Mode = str
				}
			}
		case "poll":
			if b, ok := v.(bool); ok {
				s.Poll = b
			} else {
				p.errorf(kp, "want true or false, got %s", tomlType(v))
			}
		case "max_frame":
			p.integer(kp, v, &s.MaxFrame, MinMaxFrame, MaxMaxFrame, "bytes")
		case "keep_builds":
			p.integer(kp, v, &s.KeepBuilds, 1, 1000, "builds")
		case "log_lines":
			p.integer(kp, v, &s.LogLines, 1, 10_000_000, "lines")
		case "api_max_conns":
			p.integer(kp, v, &s.APIMaxConns, 1, 1_000_000, "connections")
		case "api_hosts":
			if l, ok := p.strList(kp, v); ok {
				for _, h := range l {
					if h == "" || strings.ContainsAny(h, "/:@ \t") && net.ParseIP(h) == nil {
						p.errorf(kp, "%q is not a host name — write names such as \"plugvisor.internal\" (no scheme, port or path)", h)
					}
				}
				for i := range l {
					l[i] = strings.ToLower(l[i])
				}
				s.APIHosts = l
			}
		case "queue_bytes":
			p.integer(kp, v, &s.QueueBytes, MinQueueBytes, MaxQueueBytes, "bytes")
		case "recv_queue_bytes":
			p.integer(kp, v, &s.RecvQueueBytes, MinQueueBytes, MaxQueueBytes, "bytes")
		case "fetch_max_bytes":
			var n int
			p.integer(kp, v, &n, 1<<20, MaxFetchMaxBytes, "bytes")
			if n > 0 {
				s.FetchMaxBytes = int64(n)
			}
		case "log_bytes_per_sec":
			p.integer(kp, v, &s.LogBytesPerSec, 1024, 1<<30, "bytes per second")
		case "log_lines_per_sec":
			p.integer(kp, v, &s.LogLinesPerSec, 1, 10_000_000, "lines per second")
		case "log_line_max":
			p.integer(kp, v, &s.LogLineMax, 80, 1<<20, "bytes")
		case "env_inherit":
			if names, ok := p.envNames(kp, v); ok {
				s.EnvInherit = names
			}
		case "config_check":
			p.duration(kp, v, &s.ConfigCheck, true)
		case "shutdown_timeout":
			p.duration(kp, v, &s.ShutdownTimeout, false)
		case "api_token_file":
			if str, ok := p.str(kp, v); ok {
				if str == "" {
					p.errorf(kp, "want a file path (a mounted Secret), or leave the key out for <state_dir>/api.token")
				} else {
					s.APITokenFile = str
				}
			}
		case "listen", "tls_cert", "tls_key", "tls_client_ca", "remote_heartbeat_interval", "remote_heartbeat_timeout":
			p.externalKey(kp, k, v, s) // config/external.go
		default:
			p.unknown(kp, supervisorKeys)
		}
	}
	p.externalSupervisor(path, s, base)
	// Relations between values: reported at the later key's line.
	if s.MaxWait.Duration < s.Debounce.Duration {
		p.errorf(child(path, "max_wait"), "%v is shorter than debounce (%v) — max_wait bounds how long debouncing may delay a build", s.MaxWait, s.Debounce)
	}
	if s.HeartbeatTimeout.Duration <= s.HeartbeatInterval.Duration {
		p.errorf(child(path, "heartbeat_timeout"), "%v must be longer than heartbeat_interval (%v)", s.HeartbeatTimeout, s.HeartbeatInterval)
	}
	if s.BackoffMax.Duration < s.BackoffMin.Duration {
		p.errorf(child(path, "backoff_max"), "%v is shorter than backoff_min (%v)", s.BackoffMax, s.BackoffMin)
	}
	if (s.APITLSCert == "") != (s.APITLSKey == "") {
		p.errorf(child(path, "api_tls_key"), "api_tls_cert and api_tls_key go together — set both (PEM files) to serve the API over TLS, or neither")
	}
	if s.APIClientCA != "" && s.APITLSCert == "" {
		p.errorf(child(path, "api_client_ca"), "client certificates need TLS — set api_tls_cert and api_tls_key too")
	}
	if s.ShutdownTimeout.Duration < s.StopGrace.Duration {
		p.errorf(child(path, "shutdown_timeout"), "%v is shorter than stop_grace (%v) — a clean stop gives every plugin its grace", s.ShutdownTimeout, s.StopGrace)
	}
	if s.APITokenFile != "" {
		if abs, err := expandPath(s.APITokenFile, base); err == nil {
			s.APITokenFile = abs
		}
	}
	for _, d := range []*string{&s.BinDir, &s.RemoteDir, &s.StateDir, &s.APITLSCert, &s.APITLSKey, &s.APIClientCA} {
		if *d == "" {
			continue
		}
		if abs, err := expandPath(*d, base); err == nil {
			*d = abs
		}
	}
	if rest, ok := strings.CutPrefix(s.API, UnixScheme); ok {
		if abs, err := expandPath(rest, base); err == nil {
			s.API = UnixScheme + abs
		}
	}
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

func (p *parser) pipelines(path []string, v any, cfg *Config) {
	var elems []map[string]any
	switch a := v.(type) {
	case []map[string]any:
		elems = a
	case []any:
		for i, e := range a {
			m, ok := e.(map[string]any)
			if !ok {
				p.errorf(child(path, index(i)), "want a table, got %s — write each pipeline as [[pipeline]]", tomlType(e))
				return
			}
			elems = append(elems, m)
		}
	default:
		p.errorf(path, "want [[pipeline]] tables, got %s", tomlType(v))
		return
	}
	seen := map[string]bool{}
	for i, t := range elems {
		ep := child(path, index(i))
		var pl Pipeline
		n := len(p.errs)
		for _, k := range slices.Sorted(maps.Keys(t)) {
			kp, v := child(ep, k), t[k]
			switch k {
			case "name":
				if s, ok := p.str(kp, v); ok {
					if err := ValidName(s); err != nil {
						p.errorf(kp, "%s", strings.Replace(err.Error(), "plugin name", "pipeline name", 1))
					} else if seen[s] {
						p.errorf(kp, "a pipeline named %q is already defined; names must be unique", s)
					}
					seen[s] = true
					pl.Name = s
				}
			case "source", "sink":
				if s, ok := p.str(kp, v); ok && p.ref(kp, s, cfg) {
					if k == "source" {
						pl.Source = s
					} else {
						pl.Sink = s
					}
				}
			case "functions":
				if l, ok := p.strList(kp, v); ok {
					for j, s := range l {
						p.ref(child(kp, index(j)), s, cfg)
					}
					pl.Functions = l
				}
			case "on_error":
				if s, ok := p.str(kp, v); ok {
					switch s {
					case "drop", "retry", "dead_letter":
						pl.OnError = s
					default:
						p.errorf(kp, "%q is not an error policy — write \"drop\" (the default), \"retry\" or \"dead_letter\"", s)
					}
				}
			case "dead_letter":
				if s, ok := p.str(kp, v); ok && p.ref(kp, s, cfg) {
					pl.DeadLetter = s
				}
			case "retries":
				p.integer(kp, v, &pl.Retries, 1, 100, "retries")
			default:
				p.unknown(kp, pipelineKeys)
			}
		}
		if _, ok := t["name"]; !ok {
			p.errorf(ep, "name is missing — every [[pipeline]] needs a name")
		}
		if _, ok := t["source"]; !ok {
			p.errorf(ep, "source is missing — write source = \"plugin.symbol\"")
		}
		if pl.OnError == "dead_letter" && pl.DeadLetter == "" && len(p.errs) == n {
			p.errorf(ep, "on_error = \"dead_letter\" needs dead_letter = \"plugin.sink\" naming the sink that receives the failed items")
		}
		if pl.DeadLetter != "" && (pl.OnError == "" || pl.OnError == "drop") && len(p.errs) == n {
			p.errorf(ep, "dead_letter is set but on_error drops failed items — set on_error = \"dead_letter\" (or \"retry\", which dead-letters what still fails)")
		}
		if pl.Retries != 0 && pl.OnError != "retry" && len(p.errs) == n {
			p.errorf(ep, "retries only applies with on_error = \"retry\"")
		}
		if _, ok := t["sink"]; !ok && len(pl.Functions) == 0 && len(p.errs) == n {
			p.errorf(ep, "a pipeline needs a sink or at least one function — add sink = \"plugin.symbol\"")
		}
		cfg.Pipelines = append(cfg.Pipelines, pl)
	}
}

// ref checks a "plugin.symbol" reference; the plugin must be configured.
func (p *parser) ref(path []string, s string, cfg *Config) bool {
	plugin, symbol, ok := strings.Cut(s, ".")
	if !ok || !nameRe.MatchString(plugin) || !symbolRe.MatchString(symbol) {
		p.errorf(path, "%q is not a symbol reference — write \"plugin.symbol\", e.g. \"counter.ticks\"", s)
		return false
	}
	if _, ok := cfg.Plugins[plugin]; !ok {
		known := "none is configured"
		if len(cfg.Plugins) > 0 {
			known = "configured: " + strings.Join(slices.Sorted(maps.Keys(cfg.Plugins)), ", ")
		}
		if near := closest(plugin, slices.Sorted(maps.Keys(cfg.Plugins))); near != "" {
			known = fmt.Sprintf("did you mean %q? %s", near, known)
		}
		p.errorf(path, "%q refers to plugin %q, which is not configured (%s) — add [plugins.%s] or fix the name", s, plugin, known, plugin)
		return false
	}
	return true
}
