package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/compiler"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/version"
)

// backend adapts *host.Host to api.Backend (its Symbol and event types).
type backend struct{ *host.Host }

func (b backend) Symbols() []api.Symbol {
	syms := b.Host.Symbols()
	out := make([]api.Symbol, len(syms))
	for i, s := range syms {
		out[i] = api.Symbol(s)
	}
	return out
}

func (b backend) Events(buf int) (<-chan supervisor.Event, func()) {
	s := b.Host.Events(buf)
	return s.C, s.Close
}

func (b backend) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{b.Host.Gatherer(), buildInfo}
}

// buildInfo serves plugvisor_build_info beside the host's metrics.
var buildInfo = func() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(version.Collector())
	return r
}()

// newLogger writes to w: a console writer on a terminal, JSON otherwise.
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("bad --log-level %q: want debug, info, warn, error or disabled", level)
	}
	out := w
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

type daemonFlags struct {
	config, api, logLevel string
	resetState            bool
	state                 string // dev PATH: state folder (default PATH/.plugvisor)
	quiet                 bool   // dev: plugvisor's own lines only, no plugin output
}

func daemonCommands() []*cobra.Command {
	mk := func(use, short, long, level string, dev bool) *cobra.Command {
		var f daemonFlags
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Long:  long,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return daemon(cmd, f, dev, args)
			},
		}
		if dev {
			devArgs(cmd, &f)
		}
		configFlag(cmd, &f.config)
		cmd.Flags().StringVar(&f.api, "api", "", "HTTP API address, overrides [supervisor] api (\"127.0.0.1:0\" picks a free port; unix:///path/api.sock)")
		cmd.Flags().StringVar(&f.logLevel, "log-level", level, "log level: debug, info, warn, error or disabled")
		cmd.Flags().BoolVar(&f.resetState, "reset-state", false, "if state_dir's state.db is damaged, move it aside (state.db.damaged-<time>) and start with empty state")
		return cmd
	}
	runCmd := mk("run", "Run the daemon on a config file",
		`Run builds and starts every plugin of the config, watches their sources,
binaries and the config file, swaps plugins as they change and serves the
HTTP API, until SIGINT or SIGTERM stops everything cleanly: pipelines
drained, every plugin checkpointed and stopped, within [supervisor]
shutdown_timeout (a second signal exits at once). SIGHUP re-reads the
config. Under systemd (Type=notify) it reports READY=1, STOPPING=1 and
watchdog pings itself; see docs/deploy.md.

The API listens on [supervisor] api (default 127.0.0.1:9081) or --api: a
loopback address, a Unix socket (unix:///path/api.sock) or, with api_tls_cert
and api_tls_key, any address. Every request but the health probes needs the
token in <state_dir>/api.token, which the client commands read by themselves.
Logs go to stderr, JSON unless stderr is a terminal.`, "info", false)
	devCmd := mk("dev", "Run the daemon with a readable one-line-per-change output",
		`Dev runs the same daemon as "run" and prints one line per event that
matters while editing plugins: each swap with its timings, build errors as
file:line:col: message, crashes and restarts. Logs default to warn so these
lines stand out.`, "warn", true)

	var cfgPath, logLevel string
	buildCmd := &cobra.Command{
		Use:   "build [NAME]",
		Short: "Build plugins without running them",
		Long: `Build compiles one Go plugin of the config (fetching it first if it is
remote), or every one without NAME, into bin/, and prints each build id.
Compile errors print as file:line:col: message and exit 1.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return build(cmd, cfgPath, logLevel, args)
		},
	}
	configFlag(buildCmd, &cfgPath)
	buildCmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn, error or disabled")
	return []*cobra.Command{runCmd, devCmd, buildCmd}
}

func daemon(cmd *cobra.Command, f daemonFlags, dev bool, args []string) error {
	stderr := cmd.ErrOrStderr()
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := daemonConfig(cmd, f, args, dev)
	if err != nil {
		return err
	}
	h, err := host.New(cfg, host.Options{Logger: &log, Builtins: builtin.Sources(), ResetDamagedState: f.resetState, Streamed: dev})
	if err != nil {
		return fmt.Errorf("starting the host: %w", err)
	}
	// Signals are caught before "api listening" is printed: whoever reads
	// that line may stop the daemon at once, and that stop must be clean.
	sigRun, sigStop := signals(h, &log, cfg.Supervisor.ShutdownTimeout.Duration) // lifecycle.go
	ln, srv, err := listenAPI(stderr, cfg, f.api, h, &log)
	if err != nil {
		sigStop(err)
		return err
	}

	var g run.Group
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	{
		hctx, hcancel := context.WithCancel(ctx)
		g.Add(func() error {
			if err := h.Run(hctx); err != nil {
				return fmt.Errorf("host: %w", err)
			}
			return nil
		}, func(error) { hcancel() })
	}
	{
		actx, acancel := context.WithCancel(ctx)
		g.Add(func() error { return api.ServeListener(actx, ln, srv) }, func(error) { acancel() })
	}
	if dev {
		g.Add(devStream(h, cmd.OutOrStdout(), f.quiet))
	}
	g.Add(sigRun, sigStop)
	{
		nctx, ncancel := context.WithCancel(ctx)
		g.Add(func() error { return notifyReady(nctx, h, &log, cfg.Supervisor.StartTimeout.Duration) }, func(error) { ncancel() })
	}
	stopReaper := reapAdopted(&log) // PID 1 only: reap_linux.go

	err = g.Run()
	stopReaper()
	if errors.As(err, new(errSignal)) {
		log.Info().Str("reason", err.Error()).Msg("stopped")
		return nil
	}
	return err
}

// relative shortens a diagnostic's absolute path to one relative to the
// working directory when the file is below it (what editors link best).
func relative(line string) string {
	wd, err := os.Getwd()
	if err != nil || !filepath.IsAbs(line) {
		return line
	}
	if rest, ok := strings.CutPrefix(line, wd+string(filepath.Separator)); ok {
		return rest
	}
	return line
}

func build(cmd *cobra.Command, cfgPath, logLevel string, args []string) error {
	log, err := newLogger(cmd.ErrOrStderr(), logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	h, err := host.New(cfg, host.Options{Logger: &log, Builtins: builtin.Sources(), NoWatch: true})
	if err != nil {
		return fmt.Errorf("starting the host: %w", err)
	}
	ctx, cancel := signalContext(cmd)
	defer cancel()
	out := cmd.OutOrStdout()
	results := map[string]*compiler.Result{}
	if len(args) == 1 {
		r, err := h.Build(ctx, args[0])
		if err != nil {
			return buildError(cmd.ErrOrStderr(), args[0], err)
		}
		if r == nil {
			fmt.Fprintf(out, "%s: nothing to build (%s driver)\n", args[0], kindOf(cfg, args[0]))
			return nil
		}
		results[args[0]] = r
	} else {
		results, err = h.BuildAll(ctx)
		if err != nil {
			return buildError(cmd.ErrOrStderr(), "", err)
		}
	}
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := results[n]
		fmt.Fprintf(out, "%s: build %s in %s → %s\n", n, r.ID, ms(float64(r.Duration)/float64(time.Millisecond)), r.Binary)
	}
	return nil
}

func kindOf(cfg *config.Config, name string) config.Kind {
	if p := cfg.Plugins[name]; p != nil {
		return p.Resolved.Kind
	}
	return ""
}

// buildError prints compile errors as file:line:col: message lines.
func buildError(w io.Writer, name string, err error) error {
	var be *compiler.BuildError
	if !errors.As(err, &be) || len(be.Diagnostics) == 0 {
		return err
	}
	for _, e := range splitJoined(err) {
		if errors.As(e, &be) {
			for _, d := range be.Diagnostics {
				fmt.Fprintln(w, relative(d.String()))
			}
		} else {
			fmt.Fprintf(w, "plugvisor: %v\n", e)
		}
	}
	what := "the build"
	if name != "" {
		what = name
	}
	return &exitError{code: 1, err: fmt.Errorf("%s failed to compile", what)}
}
