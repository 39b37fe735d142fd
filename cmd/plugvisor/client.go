package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/supervisor"
)

const defaultAPI = "http://127.0.0.1:9081"

// client talks to a running daemon's HTTP API.
type client struct {
	base  string // URL prefix of requests
	shown string // the address as the user knows it, for messages
	token string
	http  *http.Client
}

// apiError is an error answer of the API.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// do sends a request and returns the body of a 2xx answer; other answers
// become an *apiError with the server's message.
func (c *client) do(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return nil, 0, fmt.Errorf("cannot reach the plugvisor API at %s (is \"plugvisor run\" running? run beside its config.toml, or set -c, --api or PLUGVISOR_API): %w", c.shown, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
		}
		return data, resp.StatusCode, &apiError{code: resp.StatusCode, msg: e.Error}
	}
	return data, resp.StatusCode, nil
}

// status and report are the API's objects, supervisor's types (the JSON
// of GET /plugins/{name} and of a swap report).
type (
	status = supervisor.Status
	report = supervisor.Report
)

// reportLine is the one-line summary of a swap, shared by reload and dev:
// "counter: gen 3 → 4 build 182ms swap 12.4ms pause 1.1ms drained 5 state keys 2".
func reportLine(plugin string, r report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: gen %d → %d", plugin, r.From, r.Generation)
	if r.BuildMS > 0 {
		fmt.Fprintf(&b, " build %s", ms(r.BuildMS))
	}
	fmt.Fprintf(&b, " swap %s pause %s drained %d state keys %d", ms(r.SwapMS), ms(r.PauseMS), r.Drained, r.StateKeys)
	if r.Forced {
		b.WriteString(" (forced")
		if r.AtLeastOnce != "" {
			b.WriteString("; at least once: " + r.AtLeastOnce)
		}
		b.WriteString(")")
	}
	return b.String()
}

// ms formats milliseconds the way people read them: 182ms, 12.4ms, 1.25s.
func ms(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
	default:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	}
}

// signalContext ends on SIGINT or SIGTERM so a waiting client can be stopped.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func clientCommands() []*cobra.Command {
	var cf clientFlags
	var asJSON bool
	addFlags := func(c *cobra.Command, jsonFlag bool) *cobra.Command {
		cf.add(c)
		if jsonFlag {
			c.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
		}
		return c
	}
	// withClient gives a client command its API client and a context that
	// ends on SIGINT/SIGTERM.
	withClient := func(fn func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cf, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			return fn(ctx, c, cmd, args)
		}
	}

	statusCmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show the plugins of a running daemon",
		Long: `Show every plugin of the running daemon as a table, or one plugin with its
symbols and last reload. --json prints the API's objects.`,
		Args: cobra.MaximumNArgs(1),
		RunE: withClient(func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			path := "/plugins"
			if len(args) == 1 {
				path += "/" + url.PathEscape(args[0])
			}
			data, _, err := c.do(ctx, "GET", path, nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, data)
			}
			var list []status
			if len(args) == 1 {
				var s status
				if err := json.Unmarshal(data, &s); err != nil {
					return fmt.Errorf("unexpected answer from %s: %w", c.shown, err)
				}
				list = []status{s}
			} else if err := json.Unmarshal(data, &list); err != nil {
				return fmt.Errorf("unexpected answer from %s: %w", c.shown, err)
			}
			printStatus(out, list, len(args) == 1)
			if len(args) == 0 {
				printPipelines(ctx, c, out)
				printOrphans(ctx, c, out)
			}
			return nil
		}),
	}

	var force, async bool
	reloadCmd := &cobra.Command{
		Use:   "reload NAME",
		Short: "Rebuild (or re-fetch) a plugin and swap it in, keeping its state",
		Long: `Reload rebuilds or re-fetches the plugin and swaps the running process for a
new generation, keeping its state; it waits for the swap and prints its report.
--force replaces a generation whose drain times out (its unanswered work goes
to the new one, at least once). --async returns at once.`,
		Args: cobra.ExactArgs(1),
		RunE: withClient(func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if force {
				q.Set("force", "1")
			}
			if async {
				q.Set("async", "1")
			}
			path := "/plugins/" + url.PathEscape(args[0]) + "/reload"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			data, _, err := c.do(ctx, "POST", path, nil)
			return printReport(cmd.OutOrStdout(), args[0], data, err, asJSON, async)
		}),
	}
	reloadCmd.Flags().BoolVar(&force, "force", false, "replace the old generation even if its drain times out")
	reloadCmd.Flags().BoolVar(&async, "async", false, "start the reload and return without waiting")

	rollbackCmd := &cobra.Command{
		Use:   "rollback NAME",
		Short: "Swap a plugin back to its previous build",
		Long:  `Rollback swaps the plugin back to the build before the current one (plugvisor keeps the last few builds), keeping its state.`,
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			data, _, err := c.do(ctx, "POST", "/plugins/"+url.PathEscape(args[0])+"/rollback", nil)
			if err := printReport(cmd.OutOrStdout(), args[0], data, err, asJSON, false); err != nil || asJSON {
				return err
			}
			printRolledBack(ctx, c, cmd.OutOrStdout(), args[0])
			return nil
		}),
	}

	var n int
	var follow bool
	logsCmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a plugin's last output lines",
		Long:  `Logs prints the plugin's last captured stdout and stderr lines (and plugvisor's own notes about it), oldest first.`,
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			if follow {
				return followLogs(ctx, c, cmd.OutOrStdout(), args[0], n, asJSON)
			}
			data, _, err := c.do(ctx, "GET", fmt.Sprintf("/plugins/%s/logs?n=%d", url.PathEscape(args[0]), n), nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, data)
			}
			var lines []logLine
			if err := json.Unmarshal(data, &lines); err != nil {
				return fmt.Errorf("unexpected answer from %s: %w", c.shown, err)
			}
			for _, l := range lines {
				fmt.Fprintln(out, l)
			}
			return nil
		}),
	}
	logsCmd.Flags().IntVarP(&n, "lines", "n", 100, "how many lines")
	logsCmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines as the plugin prints them (Ctrl-C stops)")

	var callTimeout time.Duration
	callCmd := &cobra.Command{
		Use:   "call PLUGIN.FUNCTION [JSON]",
		Short: "Call a plugin function with JSON input and print its JSON output",
		Long: `Call calls a function of a running plugin. The input is one JSON value
(a string is quoted: '"a"'); without it the function gets null; "-" reads it
from stdin. An error the function returned is printed and exits 1.`,
		Example: `  plugvisor call clicks.count '"a"'`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			plugin, fn, ok := strings.Cut(args[0], ".")
			if !ok || plugin == "" || fn == "" {
				return fmt.Errorf("bad function %q: want PLUGIN.FUNCTION, such as clicks.count", args[0])
			}
			var input []byte
			if len(args) == 2 {
				input = []byte(args[1])
				if args[1] == "-" {
					var err error
					if input, err = io.ReadAll(cmd.InOrStdin()); err != nil {
						return fmt.Errorf("reading the input from stdin: %w", err)
					}
				}
				if !json.Valid(input) {
					return fmt.Errorf("the input %q is not JSON (quote strings: '\"a\"')", input)
				}
			}
			c, err := newClient(cf, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			if input == nil {
				input = []byte{}
			}
			path := "/functions/" + url.PathEscape(plugin) + "/" + url.PathEscape(fn)
			if callTimeout > 0 {
				path += "?timeout=" + url.QueryEscape(callTimeout.String())
			}
			data, _, err := c.do(ctx, "POST", path, input)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			_, err = fmt.Fprintf(out, "%s\n", bytes.TrimSpace(data))
			return err
		},
	}

	callCmd.Flags().DurationVar(&callTimeout, "timeout", 0, "the call's deadline (default [supervisor] call_timeout, 30s)")

	return []*cobra.Command{
		addFlags(statusCmd, true), addFlags(reloadCmd, true), addFlags(rollbackCmd, true),
		addFlags(logsCmd, true), addFlags(callCmd, false), addFlags(symbolsCmd(withClient, &asJSON), true),
	}
}

// printReport prints a reload or rollback answer; a failed swap prints its
// error (and the attempt's report in --json) and fails the command.
func printReport(out io.Writer, plugin string, data []byte, err error, asJSON, async bool) error {
	var ae *apiError
	if err != nil && !errors.As(err, &ae) {
		return err
	}
	if asJSON {
		if perr := printJSON(out, data); perr != nil {
			return perr
		}
		if err != nil {
			return &exitError{code: 1, silent: true, err: err}
		}
		return nil
	}
	if err != nil {
		return err
	}
	if async {
		fmt.Fprintf(out, "%s: reload started\n", plugin)
		return nil
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	fmt.Fprintln(out, reportLine(plugin, r))
	return nil
}

func printJSON(out io.Writer, data []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "  "); err != nil {
		buf.Reset()
		buf.Write(data)
	}
	buf.WriteByte('\n')
	_, err := out.Write(buf.Bytes())
	return err
}

func printStatus(out io.Writer, list []status, detail bool) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tACTIVITY\tGEN\tPID\tVERSION\tBUILD\tRESTARTS\tLAST ERROR")
	for _, s := range list {
		pid := "-"
		if s.PID > 0 {
			pid = strconv.Itoa(s.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.State, s.Activity, s.Generation, pid,
			dash(s.Version), dash(s.Build), s.Restarts, dash(firstLine(s.LastError)))
	}
	tw.Flush()
	if !detail || len(list) != 1 {
		return
	}
	s := list[0]
	fmt.Fprintf(out, "\ndriver:    %s (%s)\n", s.Driver, s.Kind)
	fmt.Fprintf(out, "sources:   %s\nsinks:     %s\nfunctions: %s\n",
		dash(strings.Join(s.Symbols.Sources, ", ")), dash(strings.Join(s.Symbols.Sinks, ", ")), dash(strings.Join(s.Symbols.Functions, ", ")))
	if s.LastReload != nil {
		fmt.Fprintf(out, "last reload: %s\n", reportLine(s.Name, *s.LastReload))
	}
	printInstances(out, s.Instances)
	if s.LastError != "" {
		fmt.Fprintf(out, "last error:\n%s\n", s.LastError)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
