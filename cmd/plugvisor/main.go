// Command plugvisor is the hot-reloading plugin supervisor's CLI: the
// daemon (run, dev), one-off builds (build), config checks (validate),
// plugin scaffolding (new) and client commands that talk to a running
// daemon's HTTP API (status, reload, rollback, logs, call).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit code other than 1 (or a message already printed).
type exitError struct {
	code   int
	silent bool
	err    error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// execute runs the CLI and returns its exit code; errors are printed as
// "plugvisor: <message>".
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.silent {
			return code
		}
	}
	fmt.Fprintf(stderr, "plugvisor: %v\n", err)
	return code
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "plugvisor",
		Short: "A hot-reloading plugin supervisor for Go",
		Long: `plugvisor runs plugins as separate processes, rebuilds them when their
sources change and swaps the running process in place, keeping its state.

Daemon:   plugvisor run -c config.toml     (or "dev" for a readable dev loop)
Client:   plugvisor status | reload NAME | rollback NAME | logs NAME | call P.F [JSON]
          (run beside the daemon's config.toml or give -c PATH: the address and the
          token come from it; --api/--token or PLUGVISOR_API/PLUGVISOR_TOKEN override)`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(daemonCommands()...)
	root.AddCommand(clientCommands()...)
	root.AddCommand(validateCmd(), newCmd(), benchCmd(), versionCmd(), stateCmd(), pythonPathCmd())
	return root
}
