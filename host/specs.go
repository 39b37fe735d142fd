package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/compiler"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/fetcher"
	"github.com/plugvisor/plugvisor/supervisor"
)

// The worker's one product: specs, made from the config by driver kind.

// prepare turns the config into a spec: fetching (remote, when fetch is
// set or nothing was fetched yet), building (Go sources), checking and
// copying (binaries). changed reports that it differs from what runs.
func (w *worker) prepare(ctx context.Context, fetch bool) (spec *supervisor.Spec, buildMS float64, changed bool, err error) {
	d := w.cfg.Resolved
	switch d.Kind {
	case config.KindBuiltin:
		plug, ok := builtin.Get(d.Builtin)
		if !ok {
			return nil, 0, false, fmt.Errorf("builtin %q is not compiled into this host (known: %v)", d.Builtin, builtin.Names())
		}
		return w.base(&supervisor.Spec{InProc: &plug, Build: "builtin"}), 0, true, nil
	case config.KindSource:
		return w.sourceSpec(ctx, d.Path)
	case config.KindBinary:
		return w.binarySpec(ctx, d.Path, w.cfg.Checksum)
	case config.KindCommand:
		s, err := w.commandSpec(d)
		return s, 0, true, err
	case config.KindExternal:
		// Nothing to build or watch: its instances connect to the listener.
		return w.base(&supervisor.Spec{Build: "external"}), 0, true, nil
	case config.KindRemote:
		fetchChanged := false
		if fetch || w.fetched == "" {
			r, err := w.fetch(ctx)
			if err != nil {
				return nil, 0, false, err
			}
			w.fetched, fetchChanged = r.Dir, r.Changed
		}
		spec, ms, changed, err := w.folderSpec(ctx, w.fetched)
		return spec, ms, changed || fetchChanged, err
	}
	return nil, 0, false, fmt.Errorf("plugin %q: unknown driver kind %q", w.name, d.Kind)
}

// base fills in what every spec of this plugin carries.
func (w *worker) base(s *supervisor.Spec) *supervisor.Spec {
	s.Kind = string(w.cfg.Resolved.Kind)
	s.Driver = w.cfg.Driver
	s.Config = w.cfg.Config
	env := make(map[string]string, len(w.cfg.Env)+len(s.Env))
	for k, v := range s.Env {
		env[k] = v
	}
	for k, v := range w.cfg.Env {
		if k == "PYTHONPATH" && env[k] != "" {
			v = env[k] + string(os.PathListSeparator) + v
		}
		env[k] = v
	}
	s.Env = env
	s.EnvInherit = w.cfg.EnvInherit
	s.Replicas = w.cfg.ReplicaCount()
	return s
}

// folderSpec resolves a fetched folder like a local one: plugin.json →
// command, Go files → build, one executable → binary.
func (w *worker) folderSpec(ctx context.Context, dir string) (*supervisor.Spec, float64, bool, error) {
	if _, err := os.Stat(filepath.Join(dir, config.ManifestFile)); err == nil {
		m, err := config.ReadManifest(dir)
		if err != nil {
			return nil, 0, false, fmt.Errorf("plugin %q: fetched %s: %w", w.name, config.ManifestFile, err)
		}
		s, err := w.commandSpec(config.Driver{Kind: config.KindCommand, Path: dir, Manifest: m})
		return s, 0, true, err
	}
	if isGo, _ := config.HasGoSources(dir); isGo {
		return w.sourceSpec(ctx, dir)
	}
	exe, err := fetcher.Executable(dir)
	if err != nil {
		return nil, 0, false, fmt.Errorf("plugin %q: the fetched folder %s is neither a Go package, a folder with %s, nor a single executable: %w",
			w.name, dir, config.ManifestFile, err)
	}
	return w.binarySpec(ctx, exe, "")
}

func (w *worker) sourceSpec(ctx context.Context, dir string) (*supervisor.Spec, float64, bool, error) {
	r, err := w.build(ctx, dir)
	if err != nil {
		return nil, 0, false, err
	}
	binDir, name, bin := w.scfg().BinDir, w.name, r.Binary
	s := w.base(&supervisor.Spec{Path: r.Binary, Build: r.ID, Started: w.setCurrent(binDir, name, bin)})
	return s, float64(r.Duration.Microseconds()) / 1000, r.Changed, nil
}

func (w *worker) setCurrent(binDir, name, bin string) func() {
	return func() {
		if err := compiler.SetCurrent(binDir, name, bin); err != nil {
			w.h.log.Warn().Str("plugin", name).Err(err).Msg("re-point current build")
		}
	}
}

// binarySpec checks file against checksum and copies it into
// bin/<plugin>/<plugin>-<sha>: the plugin runs from the copy, so the
// original can be rewritten in place while it runs and a rollback finds it.
func (w *worker) binarySpec(_ context.Context, file, checksum string) (*supervisor.Spec, float64, bool, error) {
	sum, err := compiler.FileSHA256(file)
	if err != nil {
		return nil, 0, false, fmt.Errorf("plugin %q: read binary: %w", w.name, err)
	}
	if checksum != "" && !strings.EqualFold(strings.TrimPrefix(checksum, "sha256:"), sum) {
		return nil, 0, false, fmt.Errorf("plugin %q: binary %s has sha256:%s but the config wants %s; refusing it (update checksum in the config if the new binary is trusted)",
			w.name, file, sum, checksum)
	}
	id := sum[:12]
	binDir := w.scfg().BinDir
	dst := compiler.BuildPath(binDir, w.name, id)
	dir := filepath.Dir(dst)
	if _, err := os.Stat(dst); err != nil {
		if err := copyExecutable(file, dst, sum); err != nil {
			return nil, 0, false, fmt.Errorf("plugin %q: copy binary into %s: %w", w.name, dir, err)
		}
	}
	cur := w.spec()
	changed := cur == nil || cur.Build != id
	s := w.base(&supervisor.Spec{Path: dst, Build: id, Started: w.setCurrent(binDir, w.name, dst)})
	return s, 0, changed, nil
}

// copyExecutable copies src to dst through a temp file renamed into place
// (never overwriting a running executable), and checks the copy's hash.
func copyExecutable(src, dst, sum string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-bin-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("%s changed while being copied; waiting for the next change", src)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func (w *worker) commandSpec(d config.Driver) (*supervisor.Spec, error) {
	name, args := d.Command()
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %s: %w (install it or fix %s)", w.name, name, err, config.ManifestFile)
	}
	s := &supervisor.Spec{Path: path, Args: args, Dir: d.Path, Env: map[string]string{}}
	if d.Manifest != nil {
		s.Build = d.Manifest.Version
		if d.Manifest.Language == "python" {
			s.Env["PYTHONDONTWRITEBYTECODE"] = "1" // no __pycache__ writes in a watched folder
			s.Env["PYTHONUNBUFFERED"] = "1"
			if w.h.pySDK != "" {
				s.Env["PYTHONPATH"] = w.h.pySDK
			}
		}
	}
	return w.base(s), nil
}
