package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// printInstances lists a plugin's serving instances (status NAME):
// where each runs or connected from, its certificate, generation and
// version, since when, its calls in flight and its role (leaving, if
// it said it got SIGTERM).
func printInstances(out io.Writer, list []supervisor.InstanceStatus) {
	if len(list) == 0 {
		return
	}
	fmt.Fprintln(out, "instances:")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ADDRESS\tCERT\tGEN\tVERSION\tSINCE\tIN FLIGHT\tROLE")
	for _, in := range list {
		addr := in.Address
		if addr == "" && in.PID > 0 {
			addr = "pid " + strconv.Itoa(in.PID)
		}
		since := "-"
		if !in.ConnectedSince.IsZero() {
			since = in.ConnectedSince.Local().Format(time.DateTime)
		}
		role := dash(in.Role)
		if in.Leaving { // it got SIGTERM: a rolling update retires it first
			role += " (leaving)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%d\t%s\n", dash(addr), dash(in.Cert), in.Generation, dash(in.Version), since, in.InFlight, role)
	}
	tw.Flush()
}
