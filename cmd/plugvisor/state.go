package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

// stateAccess reaches plugin state through a running daemon's API or, when
// none runs, straight in the store.
type stateAccess interface {
	list(ctx context.Context) ([]supervisor.SavedState, error)
	export(ctx context.Context, plugin string) (*supervisor.StateExport, error)
	edit(ctx context.Context, plugin string, ed supervisor.StateEdit) error
	close() error
}

type apiState struct{ c *client }

func (a apiState) list(ctx context.Context) ([]supervisor.SavedState, error) {
	data, _, err := a.c.do(ctx, "GET", "/state", nil)
	if err != nil {
		return nil, err
	}
	var out []supervisor.SavedState
	return out, json.Unmarshal(data, &out)
}

func (a apiState) export(ctx context.Context, plugin string) (*supervisor.StateExport, error) {
	data, _, err := a.c.do(ctx, "GET", "/state/"+url.PathEscape(plugin), nil)
	if err != nil {
		return nil, err
	}
	var e supervisor.StateExport
	return &e, json.Unmarshal(data, &e)
}

func (a apiState) edit(ctx context.Context, plugin string, ed supervisor.StateEdit) error {
	path := "/state/" + url.PathEscape(plugin)
	if ed.Set != nil {
		body, err := json.Marshal(ed.Set)
		if err != nil {
			return err
		}
		_, _, err = a.c.do(ctx, "PUT", path, body)
		return err
	}
	q := url.Values{}
	if ed.Scope != "" {
		q.Set("scope", ed.Scope)
	}
	if ed.Key != "" {
		q.Set("key", ed.Key)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	_, _, err := a.c.do(ctx, "DELETE", path, nil)
	return err
}

func (apiState) close() error { return nil }

// fileState is the store of a stopped daemon.
type fileState struct {
	f          *supervisor.StateFile
	configured map[string]bool // nil: no config known
}

func (s fileState) list(context.Context) ([]supervisor.SavedState, error) {
	names, err := s.f.Plugins()
	if err != nil {
		return nil, err
	}
	out := make([]supervisor.SavedState, 0, len(names))
	for _, n := range names {
		e, err := s.f.Export(n)
		if err != nil {
			return nil, err
		}
		st := supervisor.SavedState{Plugin: n, Configured: s.configured == nil || s.configured[n], Scopes: map[string]int{}}
		for _, sc := range e.ScopeNames() {
			st.Scopes[sc] = len(e.Scopes[sc])
		}
		out = append(out, st)
	}
	return out, nil
}

func (s fileState) export(_ context.Context, plugin string) (*supervisor.StateExport, error) {
	return s.f.Export(plugin)
}

func (s fileState) edit(_ context.Context, plugin string, ed supervisor.StateEdit) error {
	return s.f.Edit(plugin, ed)
}

func (s fileState) close() error { return s.f.Close() }

type stateFlags struct {
	api, token, stateDir, config string
}

// openState picks the daemon's API when one answers, else the store: the
// --state-dir, the config's state_dir, or ./.plugvisor.
func openState(ctx context.Context, cmd *cobra.Command, f stateFlags) (stateAccess, error) {
	if f.stateDir == "" {
		c, err := newClient(clientFlags{api: f.api, token: f.token, config: f.config}, cmd.Flags().Changed("config"))
		if err != nil {
			if f.api != "" || os.Getenv("PLUGVISOR_API") != "" {
				return nil, err
			}
			c = nil // no daemon to be found: the store below
		}
		if c != nil {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, _, err = c.do(pctx, "GET", "/state", nil)
			cancel()
			if err == nil {
				return apiState{c}, nil
			}
			var ae *apiError
			if errors.As(err, &ae) || f.api != "" || os.Getenv("PLUGVISOR_API") != "" {
				return nil, err // a daemon answered or was named: don't guess another store
			}
		}
	}
	dir := f.stateDir
	var configured map[string]bool
	if dir == "" {
		dir = ".plugvisor"
		if _, err := os.Stat(f.config); err == nil {
			cfg, err := loadConfig(f.config)
			if err != nil {
				return nil, err
			}
			dir = cfg.Supervisor.StateDir
			configured = configuredNames(cfg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		return nil, fmt.Errorf("no running daemon answers and there is no state store in %s: pass --api or --state-dir", dir)
	}
	sf, err := supervisor.OpenStateFile(dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "(no daemon answers: using the state store in %s)\n", dir)
	return fileState{f: sf, configured: configured}, nil
}

func configuredNames(cfg *config.Config) map[string]bool {
	m := map[string]bool{}
	for n := range cfg.Plugins {
		m[n] = true
	}
	return m
}

func stateCmd() *cobra.Command {
	var f stateFlags
	var out string
	root := &cobra.Command{
		Use:   "state",
		Short: "List, read, export, import and remove plugin state",
		Long: `State works on the state plugins keep across swaps and restarts: through the
running daemon's API (a running plugin is checkpointed first, and changes are
restored into it), or, when no daemon answers, straight in the state store
(--state-dir, the config's state_dir, or ./.plugvisor).

Scopes: "functions" (a Go plugin's functions), "function/<name>" (a Python
function), "source/<symbol>/<instance>", "sink/<symbol>/<instance>" — a
pipeline's instances are named after the pipeline. State of a removed or
renamed plugin or pipeline is kept until "state rm"; "state ls" and
"status" show it as orphaned.`,
	}
	root.PersistentFlags().StringVar(&f.api, "api", "", "daemon API address (default $PLUGVISOR_API, the config's, or ./.plugvisor/api.addr of a dev PATH daemon)")
	root.PersistentFlags().StringVar(&f.token, "token", "", "API token (default $PLUGVISOR_TOKEN, else <state_dir>/api.token)")
	root.PersistentFlags().StringVar(&f.stateDir, "state-dir", "", "use the state store in this folder (the daemon must be stopped)")
	configFlag(root, &f.config)
	with := func(fn func(ctx context.Context, s stateAccess, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, a []string) error {
			ctx, cancel := signalContext(cmd)
			defer cancel()
			s, err := openState(ctx, cmd, f)
			if err != nil {
				return err
			}
			defer s.close()
			return fn(ctx, s, cmd, a)
		}
	}
	ls := &cobra.Command{
		Use:   "ls [NAME [SCOPE]]",
		Short: "List plugins with state, a plugin's scopes, or a scope's keys",
		Args:  cobra.MaximumNArgs(2),
	}
	ls.RunE = with(func(ctx context.Context, s stateAccess, cmd *cobra.Command, args []string) error {
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		defer w.Flush()
		if len(args) == 0 {
			list, err := s.list(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, "PLUGIN\tSCOPES\tKEYS\t")
			for _, st := range list {
				keys := 0
				for _, n := range st.Scopes {
					keys += n
				}
				note := ""
				if !st.Configured {
					note = "orphaned: not configured (plugvisor state rm " + st.Plugin + ")"
				} else if len(st.Orphaned) > 0 {
					note = "orphaned scopes, no configured pipeline uses them: " + strings.Join(st.Orphaned, ", ") + " (plugvisor state rm " + st.Plugin + " SCOPE)"
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", st.Plugin, len(st.Scopes), keys, note)
			}
			return nil
		}
		e, err := s.export(ctx, args[0])
		if err != nil {
			return err
		}
		if len(args) == 1 {
			fmt.Fprintln(w, "SCOPE\tKEYS")
			for _, sc := range e.ScopeNames() {
				fmt.Fprintf(w, "%s\t%d\n", sc, len(e.Scopes[sc]))
			}
			return nil
		}
		kv, ok := e.Scopes[args[1]]
		if !ok {
			return fmt.Errorf("plugin %s has no state scope %q (it has: %s)", args[0], args[1], strings.Join(e.ScopeNames(), ", "))
		}
		fmt.Fprintln(w, "KEY\tVALUE")
		for _, k := range sortedKeys(kv) {
			v := string(kv[k])
			if len(v) > 60 {
				v = v[:57] + "..."
			}
			fmt.Fprintf(w, "%s\t%s\n", k, v)
		}
		return nil
	})
	get := &cobra.Command{Use: "get NAME SCOPE KEY", Short: "Print one state value (JSON)", Args: cobra.ExactArgs(3)}
	get.RunE = with(func(ctx context.Context, s stateAccess, cmd *cobra.Command, args []string) error {
		e, err := s.export(ctx, args[0])
		if err != nil {
			return err
		}
		v, ok := e.Scopes[args[1]][args[2]]
		if !ok {
			return fmt.Errorf("plugin %s has no state key %q in scope %q", args[0], args[2], args[1])
		}
		fmt.Fprintln(cmd.OutOrStdout(), string(v))
		return nil
	})
	export := &cobra.Command{Use: "export NAME", Short: "Print a plugin's state as JSON (a fixture for sdktest and plugvisor.testing)", Args: cobra.ExactArgs(1)}
	export.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of stdout")
	export.RunE = with(func(ctx context.Context, s stateAccess, cmd *cobra.Command, args []string) error {
		e, err := s.export(ctx, args[0])
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(e, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if out != "" {
			return os.WriteFile(out, b, 0o600)
		}
		_, err = cmd.OutOrStdout().Write(b)
		return err
	})
	imp := &cobra.Command{Use: "import NAME [FILE|-]", Short: "Load an export into a plugin's state (each scope in it is replaced)", Args: cobra.RangeArgs(1, 2)}
	imp.RunE = with(func(ctx context.Context, s stateAccess, cmd *cobra.Command, args []string) error {
		var b []byte
		var err error
		if len(args) == 2 && args[1] != "-" {
			b, err = os.ReadFile(args[1])
		} else {
			b, err = io.ReadAll(cmd.InOrStdin())
		}
		if err != nil {
			return err
		}
		var e supervisor.StateExport
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&e); err != nil || e.Scopes == nil {
			return fmt.Errorf("not a state export (from plugvisor state export): %v", err)
		}
		if err := s.edit(ctx, args[0], supervisor.StateEdit{Set: &e}); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: imported %d scopes\n", args[0], len(e.Scopes))
		return nil
	})
	rm := &cobra.Command{Use: "rm NAME [SCOPE [KEY]]", Short: "Remove a key, a scope, or all of a plugin's state", Args: cobra.RangeArgs(1, 3)}
	rm.RunE = with(func(ctx context.Context, s stateAccess, cmd *cobra.Command, args []string) error {
		ed := supervisor.StateEdit{Delete: true}
		if len(args) > 1 {
			ed.Scope = args[1]
		}
		if len(args) > 2 {
			ed.Key = args[2]
		}
		if err := s.edit(ctx, args[0], ed); err != nil {
			return err
		}
		what := "all its state"
		if len(args) > 1 {
			what = strings.Join(args[1:], " ")
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: removed %s\n", args[0], what)
		return nil
	})
	root.AddCommand(ls, get, export, imp, rm)
	return root
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// printOrphans adds the plugins whose state outlived their config to the
// status table ("" when the daemon has no state endpoint).
func printOrphans(ctx context.Context, c *client, w io.Writer) {
	list, err := apiState{c}.list(ctx)
	if err != nil {
		return
	}
	var orphans []string
	for _, st := range list {
		if !st.Configured && len(st.Scopes) > 0 {
			orphans = append(orphans, st.Plugin)
		}
	}
	if len(orphans) > 0 {
		fmt.Fprintf(w, "\norphaned state (no such plugin configured; kept until plugvisor state rm NAME): %s\n", strings.Join(orphans, ", "))
	}
	for _, st := range list {
		if st.Configured && len(st.Orphaned) > 0 {
			fmt.Fprintf(w, "orphaned state of %s (no configured pipeline uses it; kept until plugvisor state rm %s SCOPE): %s\n", st.Plugin, st.Plugin, strings.Join(st.Orphaned, ", "))
		}
	}
}
