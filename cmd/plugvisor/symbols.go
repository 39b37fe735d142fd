package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/schema"
)

// symbol is an element of GET /symbols.
type symbol struct {
	Plugin string          `json:"plugin"`
	Kind   string          `json:"kind"`
	Name   string          `json:"name"`
	In     json.RawMessage `json:"in,omitempty"`
	Out    json.RawMessage `json:"out,omitempty"`
	Item   json.RawMessage `json:"item,omitempty"`
}

// symbolsCmd lists the running daemon's symbols with their types.
func symbolsCmd(withClient func(func(context.Context, *client, *cobra.Command, []string) error) func(*cobra.Command, []string) error, asJSON *bool) *cobra.Command {
	return &cobra.Command{
		Use:   "symbols [PLUGIN]",
		Short: "List the symbols of a running daemon with their types",
		Long: `Symbols lists every source, sink and function of the running daemon's
plugins (or of one plugin) with the types their JSON Schemas announce:
a function as "input → output", a source or sink as its item type. "any"
means the plugin announced nothing (an older plugin, raw JSON, or a Python
function without type hints). --json prints GET /symbols with the schemas.`,
		Args: cobra.MaximumNArgs(1),
		RunE: withClient(func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			data, _, err := c.do(ctx, "GET", "/symbols", nil)
			if err != nil {
				return err
			}
			var syms []symbol
			if err := json.Unmarshal(data, &syms); err != nil {
				return fmt.Errorf("unexpected answer from %s: %w", c.base, err)
			}
			if len(args) == 1 {
				var mine []symbol
				for _, s := range syms {
					if s.Plugin == args[0] {
						mine = append(mine, s)
					}
				}
				if len(mine) == 0 {
					return fmt.Errorf("no symbols of plugin %q (see plugvisor status)", args[0])
				}
				syms = mine
			}
			if *asJSON {
				b, _ := json.Marshal(syms)
				return printJSON(cmd.OutOrStdout(), b)
			}
			printSymbols(cmd.OutOrStdout(), syms)
			return nil
		}),
	}
}

func printSymbols(out io.Writer, syms []symbol) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYMBOL\tKIND\tTYPE")
	for _, s := range syms {
		typ := schema.Describe(s.Item)
		if s.Kind == "function" {
			typ = schema.Describe(s.In) + " → " + schema.Describe(s.Out)
		}
		fmt.Fprintf(tw, "%s.%s\t%s\t%s\n", s.Plugin, s.Name, s.Kind, typ)
	}
	tw.Flush()
}
