package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Kind is what runs a plugin.
type Kind string

// Driver kinds (also reported by the HTTP API).
const (
	KindBuiltin Kind = "builtin" // in the host, over an in-memory transport
	KindBinary  Kind = "binary"  // a local executable, swapped when it changes
	KindSource  Kind = "source"  // a Go package folder, compiled and watched
	KindRemote  Kind = "remote"  // a repository fetched with go-getter, then built
	KindCommand Kind = "command" // a folder with plugin.json, run as its manifest says
)

// Driver is a resolved driver string.
type Driver struct {
	Kind     Kind
	Builtin  string    // builtin name (KindBuiltin, or KindSource resolved from a builtin in process mode)
	Path     string    // absolute: the binary, the Go source folder, or the command folder
	URL      string    // KindRemote: the go-getter source string, as written
	Manifest *Manifest // KindCommand
}

// Command returns the program and arguments that start a command plugin:
// "python" manifests run under python3, others run their executable.
func (d Driver) Command() (name string, args []string) {
	if d.Manifest == nil {
		return d.Path, nil
	}
	exe := filepath.Join(d.Path, filepath.FromSlash(d.Manifest.Executable))
	if d.Manifest.Language == "python" {
		return "python3", append([]string{exe}, d.Manifest.Args...)
	}
	return exe, append([]string(nil), d.Manifest.Args...)
}

// Registry maps each builtin name to its Go source folder ("" if the sources
// are not available, e.g. in an installed binary).
type Registry map[string]string

// Names returns the builtin names, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ManifestFile is the name of a command plugin's manifest.
const ManifestFile = "plugin.json"

// Manifest is a command plugin's plugin.json.
type Manifest struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Language   string   `json:"language"`   // "python" starts the executable with python3
	Executable string   `json:"executable"` // relative to the plugin's folder
	Args       []string `json:"args,omitempty"`
}

var (
	wordRe     = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	nameRe     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)
	symbolRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	languageRe = regexp.MustCompile(`^[a-z][a-z0-9_+-]*$`)
	forcedRe   = regexp.MustCompile(`^[a-z0-9]+::.`)
	httpRe     = regexp.MustCompile(`^(?i)https?://.`)
	scpRe      = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*`)
	hostRe     = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}(:[0-9]+)?/[^/].*`)
)

// MaxNameLen bounds plugin names: they become file names and parts of
// socket paths, which are limited to about 108 bytes.
const MaxNameLen = 40

// ValidName checks a plugin name: a letter, then letters, digits, '_' or '-'.
func ValidName(name string) error {
	if !nameRe.MatchString(name) || len(name) > MaxNameLen {
		return fmt.Errorf("%q is not a valid plugin name — use a letter followed by letters, digits, '_' or '-' (at most %d)", name, MaxNameLen)
	}
	return nil
}

const acceptedForms = "use a builtin name, a path (./dir, ../dir, /opt/bin/x, ~/x) to an executable, " +
	"a Go package folder or a folder with plugin.json, a go-getter URL (github.com/org/repo, git::https://…, https://…, file::…), " +
	"or \"external\" (instances started elsewhere connect to [supervisor] listen)"

// IsRemote reports whether go-getter would take s as a source URL: a forced
// getter ("git::…", "s3::…"), an http(s) URL, an scp-like git address
// ("git@host:org/repo") or a host-looking path ("github.com/org/repo").
func IsRemote(s string) bool {
	return forcedRe.MatchString(s) || httpRe.MatchString(s) || scpRe.MatchString(s) || hostRe.MatchString(s)
}

func isPath(s string) bool {
	return s == "." || s == ".." || s == "~" || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") ||
		strings.HasPrefix(s, "../") || strings.HasPrefix(s, "~/")
}

// ResolveDriver turns a driver string into a Driver, in the design's order:
// a single word is a builtin (in mode "process" one with sources resolves to
// them, Kind source); a path is a binary, a command folder (plugin.json) or a
// Go source folder; a go-getter URL is remote. Relative paths are taken from
// baseDir.
func ResolveDriver(raw, baseDir, mode string, builtins Registry) (Driver, error) {
	switch {
	case raw == "":
		return Driver{}, fmt.Errorf("driver is empty — %s", acceptedForms)
	case raw == DriverExternal:
		return Driver{Kind: KindExternal}, nil
	case wordRe.MatchString(raw):
		src, ok := builtins[raw]
		if !ok {
			known := "no builtins are registered"
			if len(builtins) > 0 {
				known = "known: " + strings.Join(builtins.Names(), ", ")
			}
			return Driver{}, fmt.Errorf("%q is not a builtin (%s) — use a builtin name, a path (./dir, /bin/x) or a go-getter URL (git::https://…)", raw, known)
		}
		if mode != ModeInproc && src != "" {
			abs, err := filepath.Abs(src)
			if err != nil {
				return Driver{}, fmt.Errorf("builtin %q: source folder %s: %w", raw, src, err)
			}
			return Driver{Kind: KindSource, Builtin: raw, Path: abs}, nil
		}
		return Driver{Kind: KindBuiltin, Builtin: raw}, nil
	case isPath(raw):
		return resolvePath(raw, baseDir)
	case IsRemote(raw):
		return Driver{Kind: KindRemote, URL: raw}, nil
	}
	hint := ""
	if _, err := os.Stat(filepath.Join(absBase(baseDir), raw)); err == nil {
		hint = fmt.Sprintf(" (for the local %s write \"./%s\")", raw, raw)
	}
	return Driver{}, fmt.Errorf("%q is not a driver%s — %s", raw, hint, acceptedForms)
}

func absBase(baseDir string) string {
	if abs, err := filepath.Abs(baseDir); err == nil {
		return abs
	}
	return baseDir
}

func resolvePath(raw, baseDir string) (Driver, error) {
	p, err := expandPath(raw, baseDir)
	if err != nil {
		return Driver{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Driver{}, fmt.Errorf("%q (%s) does not exist — a path driver names an executable file, "+
			"a Go package folder or a folder with plugin.json", raw, p)
	}
	if err != nil {
		return Driver{}, fmt.Errorf("driver %q: %w", raw, err)
	}
	if fi.Mode().IsRegular() {
		if fi.Mode().Perm()&0o111 == 0 {
			return Driver{}, fmt.Errorf("%q (%s) is a file but not executable — chmod +x it, "+
				"or point at its folder if it is Go source or has a plugin.json", raw, p)
		}
		return Driver{Kind: KindBinary, Path: p}, nil
	}
	if !fi.IsDir() {
		return Driver{}, fmt.Errorf("%q (%s) is neither a regular file nor a folder", raw, p)
	}
	if _, err := os.Stat(filepath.Join(p, ManifestFile)); err == nil {
		m, err := ReadManifest(p)
		if err != nil {
			return Driver{}, err
		}
		return Driver{Kind: KindCommand, Path: p, Manifest: m}, nil
	}
	has, err := HasGoSources(p)
	if err != nil {
		return Driver{}, fmt.Errorf("driver %q: %w", raw, err)
	}
	if has {
		return Driver{Kind: KindSource, Path: p}, nil
	}
	return Driver{}, fmt.Errorf("folder %q (%s) has neither a %s nor Go files — a folder driver is a Go main package "+
		"or a command plugin with a %s manifest", raw, p, ManifestFile, ManifestFile)
}

// IsGoSource says whether a file (name or path) is a Go source that a
// build compiles: tests are not.
func IsGoSource(name string) bool {
	return strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")
}

// HasGoSources says whether dir holds a Go package to build: a folder of
// tests alone does not. It is the one classification of a folder as Go,
// for configured and fetched folders alike.
func HasGoSources(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !e.IsDir() && IsGoSource(e.Name()) {
			return true, nil
		}
	}
	return false, nil
}

// expandPath makes a config path absolute: "~/" is the home folder, other
// relative paths are taken from baseDir.
func expandPath(raw, baseDir string) (string, error) {
	p := raw
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%q: cannot find the home folder: %w", raw, err)
		}
		p = filepath.Join(home, p[1:])
	} else if !filepath.IsAbs(p) {
		p = filepath.Join(absBase(baseDir), p)
	}
	return filepath.Clean(p), nil
}

// ReadManifest reads and validates dir/plugin.json: name, version and
// language set, executable a file inside dir (executable unless the
// language is "python").
func ReadManifest(dir string) (*Manifest, error) {
	file := filepath.Join(dir, ManifestFile)
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("command plugin: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w — it holds a JSON object with name, version, language, executable and optional args", file, err)
	}
	var problems []string
	if strings.TrimSpace(m.Name) == "" {
		problems = append(problems, `"name" is missing`)
	}
	if strings.TrimSpace(m.Version) == "" {
		problems = append(problems, `"version" is missing`)
	}
	if !languageRe.MatchString(m.Language) {
		problems = append(problems, fmt.Sprintf(`"language" %q is not a language name such as "python"`, m.Language))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", file, strings.Join(problems, "; "))
	}
	exe := filepath.FromSlash(m.Executable)
	if exe == "" || filepath.IsAbs(exe) || !filepath.IsLocal(exe) {
		return nil, fmt.Errorf("%s: \"executable\" %q must be a file inside %s, written relative to it (e.g. \"main.py\")", file, m.Executable, dir)
	}
	full := filepath.Join(dir, exe)
	fi, err := os.Stat(full)
	if err != nil {
		return nil, fmt.Errorf("%s: \"executable\" %q: %w", file, m.Executable, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: \"executable\" %q is not a regular file", file, m.Executable)
	}
	if m.Language != "python" && fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("%s: \"executable\" %q is not executable — chmod +x it (only python needs no exec bit)", file, m.Executable)
	}
	return &m, nil
}
