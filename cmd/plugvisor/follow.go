package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// logLine is one line of GET /plugins/{name}/logs.
type logLine struct {
	At         time.Time `json:"at"`
	Generation int       `json:"generation"`
	Stream     string    `json:"stream"`
	Line       string    `json:"line"`
}

func (l logLine) String() string {
	return fmt.Sprintf("%s gen %d %s: %s", l.At.Local().Format("15:04:05.000"), l.Generation, l.Stream, l.Line)
}

// followLogs prints a plugin's last n lines, then every new one as the
// daemon streams it, until ctx ends (Ctrl-C) or the daemon goes away.
func followLogs(ctx context.Context, c *client, out io.Writer, name string, n int, asJSON bool) error {
	path := fmt.Sprintf("/plugins/%s/logs?follow=1&n=%d", url.PathEscape(name), n)
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("cannot reach the plugvisor API at %s (is a daemon running? set --api or PLUGVISOR_API): %w", c.shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &apiError{code: resp.StatusCode, msg: e.Error}
		}
		return &apiError{code: resp.StatusCode, msg: fmt.Sprintf("GET %s: %s", path, resp.Status)}
	}
	rd := bufio.NewReader(resp.Body)
	for {
		raw, err := rd.ReadBytes('\n')
		if len(raw) > 0 {
			if asJSON {
				out.Write(raw)
			} else {
				var l logLine
				if json.Unmarshal(raw, &l) != nil {
					return fmt.Errorf("unexpected line from %s: %q", c.base, raw)
				}
				fmt.Fprintln(out, l)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C: done following
			}
			if errors.Is(err, io.EOF) {
				return errors.New("the daemon closed the log stream (it stopped?)")
			}
			return fmt.Errorf("log stream: %w", err)
		}
	}
}

// printRolledBack says which build a rollback went to.
func printRolledBack(ctx context.Context, c *client, out io.Writer, name string) {
	data, _, err := c.do(ctx, "GET", "/plugins/"+url.PathEscape(name), nil)
	if err != nil {
		return
	}
	var st struct {
		Build string `json:"build"`
	}
	if json.Unmarshal(data, &st) == nil && st.Build != "" {
		fmt.Fprintf(out, "%s: rolled back to build %s\n", name, st.Build)
	}
}
