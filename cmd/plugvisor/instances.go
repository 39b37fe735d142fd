package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// printInstances lists the generations serving a plugin (status NAME):
// the primary, then replicas and external instances.
func printInstances(out io.Writer, list []supervisor.InstanceStatus, now time.Time) {
	if len(list) == 0 {
		return
	}
	fmt.Fprintln(out, "instances:")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ROLE\tADDRESS\tCERT\tGEN\tVERSION\tSINCE\tIN FLIGHT")
	for _, in := range list {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\n", in.Role, in.Address, dash(in.CertName), in.Generation,
			dash(in.Version), now.Sub(in.ConnectedSince).Round(time.Second), strconv.Itoa(in.InFlight))
	}
	tw.Flush()
}
