package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// pipeStatus is the client's view of GET /pipelines.
type pipeStatus struct {
	Name         string  `json:"name"`
	State        string  `json:"state"`
	OnError      string  `json:"on_error"`
	In           uint64  `json:"in"`
	Out          uint64  `json:"out"`
	InFlight     int64   `json:"in_flight"`
	Dropped      uint64  `json:"dropped"`
	DeadLettered uint64  `json:"dead_lettered"`
	Throughput   float64 `json:"throughput"`
	LastError    string  `json:"last_error"`
	Stages       []struct {
		Stage string `json:"stage"`
		Ref   string `json:"ref"`
	} `json:"stages"`
}

// printPipelines prints the daemon's pipelines under the plugin table;
// nothing when it runs none (or is too old to report them).
func printPipelines(ctx context.Context, c *client, out io.Writer) {
	data, _, err := c.do(ctx, "GET", "/pipelines", nil)
	if err != nil {
		return
	}
	var list []pipeStatus
	if json.Unmarshal(data, &list) != nil || len(list) == 0 {
		return
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tSTATE\tSTAGES\tIN\tOUT\tIN FLIGHT\tDROPPED\tDEAD-LETTERED\tITEMS/S\tLAST ERROR")
	for _, p := range list {
		stages := ""
		for i, s := range p.Stages {
			if s.Ref == "" {
				continue
			}
			if i > 0 {
				stages += " → "
			}
			stages += s.Ref
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.0f\t%s\n", p.Name, p.State, stages, p.In, p.Out, p.InFlight,
			p.Dropped, p.DeadLettered, p.Throughput, dash(firstLine(p.LastError)))
	}
	tw.Flush()
}
