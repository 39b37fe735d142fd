package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/version"
)

func versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision, Go version and wire protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			i := version.Get()
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(i)
			}
			rev := i.Revision
			if rev == "" {
				rev = "unknown"
			} else if i.Modified {
				rev += " (modified)"
			}
			fmt.Fprintf(out, "plugvisor %s\nrevision:  %s\ngo:        %s\nprotocol:  %d\nplatform:  %s\n",
				i.Version, rev, i.GoVersion, i.Protocol, i.Platform)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
