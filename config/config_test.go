package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fixture lays out one of each driver kind under a temp folder.
type fixture struct {
	dir      string // config folder
	bin      string // executable file
	src      string // Go package folder
	cmd      string // folder with plugin.json + main.py
	builtins Registry
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{dir: dir, bin: filepath.Join(dir, "plugins", "mysql"), src: filepath.Join(dir, "examples", "counter"),
		cmd: filepath.Join(dir, "examples", "pyjson")}
	write(t, f.bin, "#!/bin/sh\n", 0o755)
	write(t, filepath.Join(f.src, "main.go"), "package main\nfunc main() {}\n", 0o644)
	write(t, filepath.Join(f.cmd, "plugin.json"), `{"name":"pyjson","version":"1.0.0","language":"python","executable":"main.py"}`, 0o644)
	write(t, filepath.Join(f.cmd, "main.py"), "print('hi')\n", 0o644) // no exec bit: python needs none
	jsonSrc := filepath.Join(dir, "builtin", "json")
	write(t, filepath.Join(jsonSrc, "main.go"), "package main\n", 0o644)
	f.builtins = Registry{"json": jsonSrc, "upper": ""}
	return f
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

// parseErr parses src expecting failure and returns the first *Error.
func parseErr(t *testing.T, src string, f fixture) *Error {
	t.Helper()
	_, err := Parse([]byte(src), f.dir, f.builtins)
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", src)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	return ce
}

func wantErr(t *testing.T, e *Error, line int, key string, contains ...string) {
	t.Helper()
	if e.Line != line || e.Key != key {
		t.Errorf("error at line %d key %q, want line %d key %q: %v", e.Line, e.Key, line, key, e)
	}
	for _, c := range contains {
		if !strings.Contains(e.Error(), c) {
			t.Errorf("error %q does not mention %q", e.Error(), c)
		}
	}
}

func TestDefaults(t *testing.T) {
	f := newFixture(t)
	cfg, err := Parse(nil, f.dir, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultSupervisor()
	want.BinDir = filepath.Join(f.dir, "bin")
	want.RemoteDir = filepath.Join(f.dir, "remote-plugins")
	want.StateDir = filepath.Join(f.dir, ".plugvisor")
	if !reflect.DeepEqual(cfg.Supervisor, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg.Supervisor, want)
	}
	if cfg.Supervisor.Debounce.Duration != 100*time.Millisecond || cfg.Supervisor.MaxFrame != 16<<20 ||
		cfg.Supervisor.Mode != "process" || cfg.Supervisor.API != "127.0.0.1:9081" || cfg.Supervisor.KeepBuilds != 5 {
		t.Errorf("documented defaults changed: %+v", cfg.Supervisor)
	}
	if cfg.Plugins == nil || len(cfg.Plugins) != 0 || len(cfg.Pipelines) != 0 || cfg.Dir != f.dir {
		t.Errorf("empty config: %+v", cfg)
	}
}

func TestEveryKey(t *testing.T) {
	f := newFixture(t)
	src := `
[supervisor]
bin_dir = "out/bin"
remote_dir = "/var/remote"
state_dir = "~/state"
api = ":0"
debounce = "50ms"
max_wait = "1s"
mode = "inproc"
poll = true
start_timeout = "1s"
drain_timeout = "2s"
snapshot_timeout = "3s"
restore_timeout = "4s"
stop_grace = "5s"
heartbeat_interval = "6s"
heartbeat_timeout = "7s"
checkpoint_interval = "8s"
backoff_min = "9ms"
backoff_max = "10s"
max_frame = 65536
keep_builds = 2
log_lines = 10
api_hosts = ["Plugvisor.Internal", "10.0.0.5"]
api_tls_cert = "tls/cert.pem"
api_tls_key = "/etc/pv/key.pem"
api_client_ca = "tls/ca.pem"
api_max_conns = 64
call_timeout = "11s"
queue_bytes = 1048576
recv_queue_bytes = 2097152
fetch_max_bytes = 1073741824
log_bytes_per_sec = 2048
log_lines_per_sec = 20
log_line_max = 100
env_inherit = ["AWS_PROFILE"]
config_check = "0s"
shutdown_timeout = "11s"
api_token_file = "secrets/token"
listen = "tls+tcp://127.0.0.1:9443"
tls_cert = "tls/server.pem"
tls_key = "/etc/pv/server.key"
tls_client_ca = "tls/ca.pem"
remote_heartbeat_interval = "12s"
remote_heartbeat_timeout = "13s"

[plugins.counter]
driver = "./examples/counter"
required = false
env = { GOGC = "off" }
[plugins.counter.config]
interval = "10ms"
nested = { a = [1, 2] }
[plugins.counter.build]
flags = ["-trimpath"]
tags = ["netgo", "dev"]
env = { CGO_ENABLED = "0" }

[plugins.mysql]
driver = "./plugins/mysql"
checksum = "sha256:` + strings.Repeat("AB", 32) + `"

[plugins.geo]
driver = "git::https://example.com/acme/geo.git?ref=v1.2.0"
update = "10m"
submodules = true

[[pipeline]]
name = "demo"
source = "counter.ticks"
functions = ["geo.double", "mysql.upper"]
sink = "mysql.append"
`
	cfg, err := Parse([]byte(src), f.dir, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	s := cfg.Supervisor
	ms := func(n int) Duration { return Duration{time.Duration(n) * time.Millisecond} }
	sec := func(n int) Duration { return Duration{time.Duration(n) * time.Second} }
	want := Supervisor{
		BinDir: filepath.Join(f.dir, "out", "bin"), RemoteDir: "/var/remote", StateDir: filepath.Join(home, "state"),
		API: ":0", Debounce: ms(50), MaxWait: sec(1), Mode: "inproc", Poll: true,
		StartTimeout: sec(1), DrainTimeout: sec(2), SnapshotTimeout: sec(3), RestoreTimeout: sec(4), StopGrace: sec(5),
		HeartbeatInterval: sec(6), HeartbeatTimeout: sec(7), CheckpointInterval: sec(8), BackoffMin: ms(9), BackoffMax: sec(10),
		MaxFrame: 65536, KeepBuilds: 2, LogLines: 10,
		APIHosts: []string{"plugvisor.internal", "10.0.0.5"}, APITLSCert: filepath.Join(f.dir, "tls", "cert.pem"),
		APITLSKey: "/etc/pv/key.pem", APIClientCA: filepath.Join(f.dir, "tls", "ca.pem"), APIMaxConns: 64, CallTimeout: sec(11),
		QueueBytes: 1 << 20, RecvQueueBytes: 2 << 20, FetchMaxBytes: 1 << 30,
		LogBytesPerSec: 2048, LogLinesPerSec: 20, LogLineMax: 100, EnvInherit: []string{"AWS_PROFILE"},
		ConfigCheck: ms(0), ShutdownTimeout: sec(11), APITokenFile: filepath.Join(f.dir, "secrets", "token"),
		Listen: "tls+tcp://127.0.0.1:9443", TLSCert: filepath.Join(f.dir, "tls", "server.pem"), TLSKey: "/etc/pv/server.key",
		TLSClientCA: filepath.Join(f.dir, "tls", "ca.pem"), RemoteHeartbeatInterval: sec(12), RemoteHeartbeatTimeout: sec(13),
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("supervisor:\n got %+v\nwant %+v", s, want)
	}
	if s.TokenFile() != want.APITokenFile || !cfg.Plugins["counter"].Optional || cfg.Plugins["mysql"].Optional {
		t.Errorf("token file %s, counter optional %v, mysql optional %v", s.TokenFile(), cfg.Plugins["counter"].Optional, cfg.Plugins["mysql"].Optional)
	}
	c := cfg.Plugins["counter"]
	if c.Resolved.Kind != KindSource || c.Resolved.Path != f.src || c.Env["GOGC"] != "off" ||
		c.Config["interval"] != "10ms" || !reflect.DeepEqual(c.Config["nested"], map[string]any{"a": []any{int64(1), int64(2)}}) ||
		!reflect.DeepEqual(c.Build, Build{Flags: []string{"-trimpath"}, Tags: []string{"netgo", "dev"}, Env: map[string]string{"CGO_ENABLED": "0"}}) {
		t.Errorf("counter: %+v", c)
	}
	if c.Update != "" || c.Checksum != "" {
		t.Errorf("counter got update/checksum defaults: %+v", c)
	}
	m := cfg.Plugins["mysql"]
	if m.Resolved.Kind != KindBinary || m.Resolved.Path != f.bin || m.Checksum != "sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("mysql: %+v", m)
	}
	g := cfg.Plugins["geo"]
	if every, ok := g.UpdateInterval(); g.Resolved.Kind != KindRemote || g.Resolved.URL != g.Driver || !ok || every != 10*time.Minute {
		t.Errorf("geo: %+v", g)
	}
	wantPl := []Pipeline{{Name: "demo", Source: "counter.ticks", Functions: []string{"geo.double", "mysql.upper"}, Sink: "mysql.append"}}
	if !reflect.DeepEqual(cfg.Pipelines, wantPl) {
		t.Errorf("pipelines: %+v", cfg.Pipelines)
	}
}

func TestUnknownKeys(t *testing.T) {
	f := newFixture(t)
	e := parseErr(t, "# c\n[supervisor]\napi = \"127.0.0.1:1\"\n\n\n\ndebouce = \"1s\"\n", f)
	wantErr(t, e, 7, "supervisor.debouce", `unknown key "supervisor.debouce"`, `did you mean "debounce"`,
		"known keys: bin_dir, remote_dir, state_dir, api, debounce")
	if !strings.HasPrefix(e.Error(), "line 7: unknown key") {
		t.Errorf("format: %q", e.Error())
	}

	e = parseErr(t, "[plugins.a]\ndriver = \"upper\"\ndrvier = \"x\"\n", f)
	wantErr(t, e, 3, "plugins.a.drvier", "known keys: driver, checksum, update, config, build, env")

	e = parseErr(t, "[plugins.a]\ndriver = \"upper\"\nbuild = { flags = [], tgas = [\"x\"] }\n", f)
	wantErr(t, e, 3, "plugins.a.build.tgas", "known keys: flags, tags, env")

	e = parseErr(t, "[plugin.a]\ndriver = \"upper\"\n", f)
	wantErr(t, e, 1, "plugin", `did you mean "plugins"`, "[[pipeline]]")

	// The line is that of the right [[pipeline]] element, not the first.
	e = parseErr(t, `[plugins.a]
driver = "upper"
[[pipeline]]
name = "one"
source = "a.x"
sink = "a.y"
[[pipeline]]
name = "two"
source = "a.x"
snk = "a.y"
`, f)
	wantErr(t, e, 10, "pipeline[1].snk", "known keys: name, source, functions, sink")
}

func TestLoadNamesFileAndLine(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir, "config.toml")
	write(t, path, "[supervisor]\nmode = \"process\"\ndebounce = \"fast\"\n", 0o644)
	_, err := Load(path, f.builtins)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Load: %v", err)
	}
	wantErr(t, e, 3, "supervisor.debounce", `"fast" is not a duration`, `"100ms"`)
	if want := path + ":3: supervisor.debounce: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("%q does not start with %q", err, want)
	}

	write(t, path, "[supervisor]\nbin_dir = \"b\"\n[plugins.c]\ndriver = \"./examples/counter\"\n", 0o644)
	// Loading from another working directory: paths still come from the file's folder.
	t.Chdir(t.TempDir())
	cfg, err := Load(path, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || cfg.Supervisor.BinDir != filepath.Join(f.dir, "b") || cfg.Plugins["c"].Resolved.Path != f.src {
		t.Errorf("relative paths: %+v %+v", cfg, cfg.Plugins["c"])
	}
	if _, err := Load(filepath.Join(f.dir, "missing.toml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestBadValues(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name, src string
		line      int
		key       string
		contains  []string
	}{
		{"syntax", "[supervisor]\napi = \"x\nmode = 1\n", 2, "", []string{"syntax"}},
		{"duration as integer", "[supervisor]\n\ndebounce = 100\n", 3, "supervisor.debounce", []string{"want a duration string", "got an integer"}},
		{"negative duration", "[supervisor]\nstop_grace = \"-1s\"\n", 2, "supervisor.stop_grace", []string{"positive"}},
		{"mode", "[supervisor]\nmode = \"fast\"\n", 2, "supervisor.mode", []string{`unknown mode "fast"`, `"process"`, `"inproc"`}},
		{"poll type", "[supervisor]\npoll = \"yes\"\n", 2, "supervisor.poll", []string{"true or false"}},
		{"max_frame small", "[supervisor]\nmax_frame = 1024\n", 2, "supervisor.max_frame", []string{"want 65536 to"}},
		{"keep_builds", "[supervisor]\nkeep_builds = 0\n", 2, "supervisor.keep_builds", []string{"out of range"}},
		{"api", "[supervisor]\napi = \"localhost\"\n", 2, "supervisor.api", []string{"host:port"}},
		{"api unix empty", "[supervisor]\napi = \"unix://\"\n", 2, "supervisor.api", []string{"names no socket"}},
		{"api_hosts with scheme", "[supervisor]\napi_hosts = [\"http://x.example\"]\n", 2, "supervisor.api_hosts", []string{"not a host name"}},
		{"tls cert without key", "[supervisor]\napi_tls_cert = \"c.pem\"\n", 1, "supervisor.api_tls_key", []string{"go together"}},
		{"client ca without tls", "[supervisor]\napi_client_ca = \"ca.pem\"\n", 2, "supervisor.api_client_ca", []string{"need TLS"}},
		{"call_timeout zero", "[supervisor]\ncall_timeout = \"0s\"\n", 2, "supervisor.call_timeout", []string{"positive"}},
		{"max_wait < debounce", "[supervisor]\ndebounce = \"3s\"\n", 1, "supervisor.max_wait", []string{"shorter than debounce"}},
		{"heartbeat", "[supervisor]\nheartbeat_interval = \"1s\"\nheartbeat_timeout = \"1s\"\n", 3, "supervisor.heartbeat_timeout", []string{"longer than heartbeat_interval"}},
		{"shutdown_timeout < stop_grace", "[supervisor]\nstop_grace = \"5s\"\nshutdown_timeout = \"2s\"\n", 3, "supervisor.shutdown_timeout", []string{"shorter than stop_grace"}},
		{"api_token_file empty", "[supervisor]\napi_token_file = \"\"\n", 2, "supervisor.api_token_file", []string{"Secret"}},
		{"required type", "[plugins.a]\ndriver = \"upper\"\nrequired = \"no\"\n", 3, "plugins.a.required", []string{"true or false", "/readyz"}},
		{"supervisor not table", "supervisor = 1\n", 1, "supervisor", []string{"want a table"}},
		{"bad plugin name", "[plugins.\"my plugin\"]\ndriver = \"upper\"\n", 1, `plugins."my plugin"`, []string{"not a valid plugin name"}},
		{"no driver", "[plugins.a]\nenv = {}\n", 1, "plugins.a", []string{"driver is missing", "go-getter URL"}},
		{"checksum format", "[plugins.a]\ndriver = \"./plugins/mysql\"\nchecksum = \"md5:00\"\n", 3, "plugins.a.checksum", []string{"sha256:"}},
		{"checksum on builtin", "[plugins.a]\ndriver = \"upper\"\nchecksum = \"sha256:" + strings.Repeat("0", 64) + "\"\n", 3, "plugins.a.checksum", []string{"binary and remote"}},
		{"update on source", "[plugins.a]\ndriver = \"./examples/counter\"\nupdate = \"1m\"\n", 3, "plugins.a.update", []string{"only to remote"}},
		{"bad update", "[plugins.a]\ndriver = \"github.com/x/y\"\nupdate = \"often\"\n", 3, "plugins.a.update", []string{`"manual"`, `"10m"`}},
		{"env value type", "[plugins.a]\ndriver = \"upper\"\n[plugins.a.env]\nN = 1\n", 4, "plugins.a.env.N", []string{"quote it"}},
		{"build on binary", "[plugins.a]\ndriver = \"./plugins/mysql\"\n[plugins.a.build]\ntags = [\"x\"]\n", 3, "plugins.a.build", []string{"only to Go drivers"}},
		{"build -o", "[plugins.a]\ndriver = \"upper\"\n[plugins.a.build]\nflags = [\"-o=x\"]\n", 4, "plugins.a.build.flags", []string{"output path"}},
		{"tags element type", "[plugins.a]\ndriver = \"upper\"\nbuild.tags = [\n  \"a\",\n  2,\n]\n", 5, "plugins.a.build.tags[1]", []string{"want a string"}},
		{"config not table", "[plugins.a]\ndriver = \"upper\"\nconfig = \"x\"\n", 3, "plugins.a.config", []string{"want a table"}},
		{"driver on line", "[plugins.a]\n\n\ndriver = \"nope\"\n", 4, "plugins.a.driver", []string{`"nope" is not a builtin (known: json, upper)`}},
		{"pipeline name", "[plugins.a]\ndriver = \"upper\"\n[[pipeline]]\nname = \"x y\"\nsource = \"a.s\"\nsink = \"a.t\"\n", 4, "pipeline[0].name", []string{"pipeline name"}},
		{"pipeline no sink", "[plugins.a]\ndriver = \"upper\"\n[[pipeline]]\nname = \"p\"\nsource = \"a.s\"\n", 3, "pipeline[0]", []string{"sink or at least one function"}},
		{"pipeline bad ref", "[plugins.a]\ndriver = \"upper\"\n[[pipeline]]\nname = \"p\"\nsource = \"a\"\nsink = \"a.t\"\n", 5, "pipeline[0].source", []string{`"plugin.symbol"`}},
		{"pipeline duplicate", "[plugins.a]\ndriver = \"upper\"\n[[pipeline]]\nname = \"p\"\nsource = \"a.s\"\nsink = \"a.t\"\n[[pipeline]]\nname = \"p\"\nsource = \"a.s\"\nsink = \"a.t\"\n", 8, "pipeline[1].name", []string{"unique"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, parseErr(t, c.src, f), c.line, c.key, c.contains...)
		})
	}
}

func TestPipelineMissingPlugin(t *testing.T) {
	f := newFixture(t)
	src := `[plugins.counter]
driver = "upper"

[[pipeline]]
name = "demo"
source = "counter.ticks"
functions = [
  "counter.double",
  "transform.double",
]
sink = "counter.append"
`
	e := parseErr(t, src, f)
	wantErr(t, e, 9, "pipeline[0].functions[1]", `plugin "transform", which is not configured (configured: counter)`, "[plugins.transform]")
}

func TestSeveralErrorsAllReported(t *testing.T) {
	f := newFixture(t)
	_, err := Parse([]byte("[supervisor]\nmode = \"x\"\nbogus = 1\n[plugins.a]\ndriver = \"zzz\"\n"), f.dir, f.builtins)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"line 2: supervisor.mode", "line 3: unknown key", "line 5: plugins.a.driver"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestResolveDriverKinds(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		raw  string
		want Driver
	}{
		{"./plugins/mysql", Driver{Kind: KindBinary, Path: f.bin}},
		{f.bin, Driver{Kind: KindBinary, Path: f.bin}},
		{"./examples/counter", Driver{Kind: KindSource, Path: f.src}},
		{"./examples/../examples/counter/", Driver{Kind: KindSource, Path: f.src}},
		{"./examples/pyjson", Driver{Kind: KindCommand, Path: f.cmd,
			Manifest: &Manifest{Name: "pyjson", Version: "1.0.0", Language: "python", Executable: "main.py"}}},
		{"upper", Driver{Kind: KindBuiltin, Builtin: "upper"}},
		{"github.com/acme/geo", Driver{Kind: KindRemote, URL: "github.com/acme/geo"}},
		{"gitlab.com/acme/geo//sub?ref=v1", Driver{Kind: KindRemote, URL: "gitlab.com/acme/geo//sub?ref=v1"}},
		{"git::https://example.com/acme/geo.git?ref=v1.2.0", Driver{Kind: KindRemote, URL: "git::https://example.com/acme/geo.git?ref=v1.2.0"}},
		{"https://example.com/p.tar.gz", Driver{Kind: KindRemote, URL: "https://example.com/p.tar.gz"}},
		{"file::./local", Driver{Kind: KindRemote, URL: "file::./local"}},
		{"s3::https://s3.amazonaws.com/b/k", Driver{Kind: KindRemote, URL: "s3::https://s3.amazonaws.com/b/k"}},
		{"git@github.com:acme/geo.git", Driver{Kind: KindRemote, URL: "git@github.com:acme/geo.git"}},
	}
	for _, c := range cases {
		got, err := ResolveDriver(c.raw, f.dir, ModeProcess, f.builtins)
		if err != nil {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.raw, got, c.want)
		}
	}
	if name, args := (Driver{Kind: KindCommand, Path: f.cmd, Manifest: &Manifest{Language: "python", Executable: "main.py", Args: []string{"-u"}}}).Command(); name != "python3" ||
		!reflect.DeepEqual(args, []string{filepath.Join(f.cmd, "main.py"), "-u"}) {
		t.Errorf("python command: %s %v", name, args)
	}
}

func TestResolveDriverErrors(t *testing.T) {
	f := newFixture(t)
	write(t, filepath.Join(f.dir, "notexec"), "x", 0o644)
	write(t, filepath.Join(f.dir, "empty", "README"), "x", 0o644)
	cases := []struct{ raw, want string }{
		{"foo", `"foo" is not a builtin (known: json, upper)`},
		{"./nope", "does not exist"},
		{"./notexec", "not executable"},
		{"./empty", "neither a plugin.json nor Go files"},
		{"examples/counter", `write "./examples/counter"`},
		{"%%garbage%%", "go-getter URL (github.com/org/repo"},
		{"", "driver is empty"},
	}
	for _, c := range cases {
		_, err := ResolveDriver(c.raw, f.dir, ModeProcess, f.builtins)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to mention %q", c.raw, err, c.want)
		}
	}
	// Every "not a driver" error lists all accepted forms.
	_, err := ResolveDriver("%%garbage%%", f.dir, ModeProcess, f.builtins)
	for _, form := range []string{"builtin name", "executable", "Go package folder", "plugin.json", "go-getter URL"} {
		if !strings.Contains(err.Error(), form) {
			t.Errorf("%v lacks %q", err, form)
		}
	}
	if _, err := ResolveDriver("foo", f.dir, ModeProcess, nil); err == nil || !strings.Contains(err.Error(), "no builtins are registered") {
		t.Errorf("empty registry: %v", err)
	}
}

func TestReadManifest(t *testing.T) {
	cases := []struct {
		name, manifest, exe string
		mode                os.FileMode
		want                string
	}{
		{"node needs exec bit", `{"name":"n","version":"1","language":"node","executable":"main.js"}`, "main.js", 0o644, "not executable"},
		{"node executable", `{"name":"n","version":"1","language":"node","executable":"main.js"}`, "main.js", 0o755, ""},
		{"missing exe", `{"name":"n","version":"1","language":"python","executable":"other.py"}`, "main.py", 0o644, "other.py"},
		{"escapes folder", `{"name":"n","version":"1","language":"python","executable":"../main.py"}`, "main.py", 0o644, "inside"},
		{"missing fields", `{"language":"python","executable":"main.py"}`, "main.py", 0o644, `"name" is missing; "version" is missing`},
		{"unknown field", `{"name":"n","version":"1","language":"python","executable":"main.py","exe":"x"}`, "main.py", 0o644, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "plugin.json"), c.manifest, 0o644)
			write(t, filepath.Join(dir, c.exe), "x", c.mode)
			m, err := ReadManifest(dir)
			if c.want == "" {
				if err != nil || m.Language != "node" {
					t.Fatalf("%+v %v", m, err)
				}
				name, _ := Driver{Kind: KindCommand, Path: dir, Manifest: m}.Command()
				if name != filepath.Join(dir, "main.js") {
					t.Errorf("command %s", name)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestModeSwitchesBuiltinResolution(t *testing.T) {
	f := newFixture(t)
	load := func(mode string) *Config {
		cfg, err := Parse([]byte("[supervisor]\nmode = \""+mode+"\"\n[plugins.j]\ndriver = \"json\"\n[plugins.u]\ndriver = \"upper\"\n"), f.dir, f.builtins)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	proc, inproc := load(ModeProcess), load(ModeInproc)
	if got := proc.Plugins["j"].Resolved; got != (Driver{Kind: KindSource, Builtin: "json", Path: f.builtins["json"]}) {
		t.Errorf("process mode: %+v", got)
	}
	if got := inproc.Plugins["j"].Resolved; got != (Driver{Kind: KindBuiltin, Builtin: "json"}) {
		t.Errorf("inproc mode: %+v", got)
	}
	// A builtin without sources runs in process either way.
	if got := proc.Plugins["u"].Resolved; got != (Driver{Kind: KindBuiltin, Builtin: "upper"}) {
		t.Errorf("process mode without sources: %+v", got)
	}
	ch := Diff(proc, inproc)
	if !ch.SupervisorChanged || !reflect.DeepEqual(ch.Changed, []string{"j"}) {
		t.Errorf("mode switch diff: %+v", ch)
	}
}

func TestDiff(t *testing.T) {
	f := newFixture(t)
	parse := func(src string) *Config {
		t.Helper()
		cfg, err := Parse([]byte(src), f.dir, f.builtins)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	base := `
[plugins.keep]
driver = "upper"
[plugins.gone]
driver = "upper"
[plugins.cfg]
driver = "upper"
config = { n = 1 }
[plugins.drv]
driver = "./examples/counter"
[[pipeline]]
name = "p"
source = "keep.s"
sink = "keep.t"
`
	old := parse(base)
	if ch := Diff(old, parse(base)); !ch.Empty() {
		t.Errorf("same config differs: %+v", ch)
	}
	changed := `
[plugins.keep]
driver = "upper"
[plugins.cfg]
driver = "upper"
config = { n = 2 }
[plugins.drv]
driver = "./plugins/mysql"
[plugins.new]
driver = "json"
[[pipeline]]
name = "p"
source = "keep.s"
functions = ["keep.f"]
sink = "keep.t"
`
	ch := Diff(old, parse(changed))
	want := Changes{Added: []string{"new"}, Removed: []string{"gone"}, Changed: []string{"cfg", "drv"}, PipelinesChanged: true}
	if !reflect.DeepEqual(ch, want) {
		t.Errorf("diff:\n got %+v\nwant %+v", ch, want)
	}
	if ch := Diff(nil, old); !reflect.DeepEqual(ch.Added, []string{"cfg", "drv", "gone", "keep"}) || !ch.PipelinesChanged {
		t.Errorf("from nothing: %+v", ch)
	}
	// Only the supervisor changed.
	if ch := Diff(old, parse("[supervisor]\napi = \":0\"\n"+base)); !ch.SupervisorChanged || len(ch.Changed) != 0 {
		t.Errorf("supervisor change: %+v", ch)
	}
}

func TestNewPlugin(t *testing.T) {
	f := newFixture(t)
	cfg, err := Parse([]byte("[plugins.a]\ndriver = \"upper\"\n"), f.dir, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfg.NewPlugin("geo", "github.com/acme/geo", nil, f.builtins)
	if err != nil || p.Resolved.Kind != KindRemote || p.Update != UpdateManual || p.Config == nil {
		t.Errorf("%+v %v", p, err)
	}
	for _, c := range []struct{ name, driver, want string }{
		{"a", "upper", "already exists"},
		{"b c", "upper", "not a valid plugin name"},
		{"b", "./nope", "does not exist"},
	} {
		_, err := cfg.NewPlugin(c.name, c.driver, nil, f.builtins)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewPlugin(%q, %q): %v, want %q", c.name, c.driver, err, c.want)
		}
		// A bad name or driver is the caller's mistake (the API's 400).
		var ce *Error
		if c.want != "already exists" && !errors.As(err, &ce) {
			t.Errorf("NewPlugin(%q, %q): %T is not a *config.Error", c.name, c.driver, err)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Duration != 90*time.Second {
		t.Fatalf("%v %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "1m30s" {
		t.Errorf("marshal: %s", b)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil || !strings.Contains(err.Error(), `"100ms"`) {
		t.Errorf("bad duration: %v", err)
	}
}

func TestLocateKeys(t *testing.T) {
	src := `# comment with = and [brackets]
title = """
multi "" line
[not.a.table]
"""
lit = '''
x = 1
'''
"quoted.key" = 'a#b' # trailing
arr = [
  1, # one
  { k = "v" },
  "]",
]
date = 1979-05-27 07:32:00Z
[a.b]
c.d = { e = [1,
  2] }
[[t]]
x = 1
[[t]]
x = 2
[t.sub]
y = 3
`
	want := map[string]int{
		"title": 2, "lit": 6, `"quoted.key"`: 9, "arr": 10, "arr[1]": 12, "arr[1].k": 12, "arr[2]": 13, "date": 15,
		"a": 16, "a.b": 16, "a.b.c.d": 17, "a.b.c.d.e": 17, "t[0]": 19, "t[0].x": 20, "t[1]": 21, "t[1].x": 22,
		"t[1].sub": 23, "t[1].sub.y": 24,
	}
	got := locateKeys(src)
	for k, l := range want {
		if got[k] != l {
			t.Errorf("%s: line %d, want %d", k, got[k], l)
		}
	}
	for _, k := range []string{"not.a.table", "not", "x"} {
		if _, ok := got[k]; ok {
			t.Errorf("string content taken for key %q", k)
		}
	}
}

// FuzzLocateKeys checks the line scanner never panics or hangs, whatever it is fed.
func FuzzLocateKeys(f *testing.F) {
	f.Add("[a]\nb = \"\"\"x\n\"\"\"\n[[c]]\nd = [1, {e = 'f'}]\n")
	f.Add("x = 1979-05-27 07:32:00Z\n'k'.\"j\" = [\n]\n")
	f.Fuzz(func(t *testing.T, src string) {
		for k, l := range locateKeys(src) {
			if l < 1 || l > strings.Count(src, "\n")+1 {
				t.Fatalf("key %q at line %d of a %d-line input", k, l, strings.Count(src, "\n")+1)
			}
		}
	})
}

func TestPipelineErrorPolicyKeys(t *testing.T) {
	f := newFixture(t)
	head := "[plugins.c]\ndriver = \"upper\"\n\n[[pipeline]]\nname = \"p\"\nsource = \"c.ticks\"\nsink = \"c.out\"\n"
	cfg, err := Parse([]byte(head+"on_error = \"retry\"\nretries = 5\ndead_letter = \"c.errors\"\n"), f.dir, f.builtins)
	if err != nil {
		t.Fatal(err)
	}
	if pl := cfg.Pipelines[0]; pl.OnError != "retry" || pl.Retries != 5 || pl.DeadLetter != "c.errors" {
		t.Fatalf("pipeline = %+v", pl)
	}
	for _, c := range []struct{ src, want string }{
		{"on_error = \"ignore\"\n", `"ignore" is not an error policy`},
		{"on_error = \"dead_letter\"\n", `needs dead_letter = "plugin.sink"`},
		{"dead_letter = \"c.errors\"\n", "dead_letter is set but on_error drops failed items"},
		{"retries = 2\n", `retries only applies with on_error = "retry"`},
		{"on_error = \"retry\"\nretries = 0\n", "out of range"},
		{"on_error = \"dead_letter\"\ndead_letter = \"d.errors\"\n", `plugin "d", which is not configured`},
	} {
		if _, err := Parse([]byte(head+c.src), f.dir, f.builtins); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to say %s", c.src, err, c.want)
		}
	}
}
