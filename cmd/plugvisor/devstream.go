package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/plugvisor/plugvisor/logstream"
	"github.com/plugvisor/plugvisor/supervisor"
)

// devSource is what the dev stream reads: the host's events, plugin
// output and status.
type devSource interface {
	Events(buf int) *supervisor.Subscriber
	FollowOutput(buf int) *supervisor.Feed[supervisor.OutputLine]
	Status(name string) (supervisor.Status, error)
}

// devStream prints, in order, plugvisor's lines (builds, swaps, errors)
// and — unless quiet — every plugin's own output, prefixed with its name
// and colored per plugin on a terminal. It returns the run.Group pair.
// Subscribing happens here, before the host starts, so the first builds
// show.
func devStream(src devSource, out io.Writer, quiet bool) (func() error, func(error)) {
	events := src.Events(1024)
	var lines *supervisor.Feed[supervisor.OutputLine]
	if !quiet {
		lines = src.FollowOutput(4096)
	}
	p := &devPrinter{out: out, quiet: quiet, status: src.Status, failed: map[string]bool{}, drops: map[string]*drops{}}
	if f, ok := out.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.style.Color = true
	}
	done := make(chan struct{})
	run := func() error {
		var lineC <-chan supervisor.OutputLine
		if lines != nil {
			lineC = lines.C
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var ev *supervisor.Event
		var ln *supervisor.OutputLine
		for {
			// One pending value per source; the earlier one prints first,
			// so plugin lines and events interleave in the order they happened.
			if ev == nil && ln == nil {
				select {
				case <-done:
					return nil
				case <-tick.C:
					p.flushDrops(time.Now())
					continue
				case e := <-events.C:
					ev = &e
				case l := <-lineC:
					ln = &l
				}
			}
			if ev == nil {
				select {
				case e := <-events.C:
					ev = &e
				default:
				}
			}
			if ln == nil && lineC != nil {
				select {
				case l := <-lineC:
					ln = &l
				default:
				}
			}
			if ln != nil && (ev == nil || !ev.At.Before(ln.At)) {
				p.line(*ln)
				ln = nil
			} else {
				p.event(*ev)
				ev = nil
			}
		}
	}
	stop := func(error) {
		events.Close()
		if lines != nil {
			lines.Close()
		}
		close(done)
	}
	return run, stop
}

type devPrinter struct {
	out    io.Writer
	quiet  bool
	style  logstream.Style
	status func(string) (supervisor.Status, error)
	failed map[string]bool // the plugin's last build failed
	drops  map[string]*drops
}

// drops counts a pipeline's dropped items between two printed lines, so a
// pipeline dropping every item prints about once a second, not per item.
type drops struct {
	n    int
	last string
	at   time.Time
}

func (p *devPrinter) println(s string) { fmt.Fprintln(p.out, s) }

func (p *devPrinter) line(l supervisor.OutputLine) {
	if l.Stream == "plugvisor" && !strings.HasPrefix(l.Line, "output over the limit") {
		return // the supervisor's notes: the events say the same
	}
	if len(l.Plugin) > p.style.Width {
		p.style.Width = len(l.Plugin)
	}
	r := logstream.Parse(l.Stream, l.Line)
	if name, _ := r.Fields["plugin"].(string); name == l.Plugin {
		delete(r.Fields, "plugin") // the prefix says it
	}
	p.println(logstream.Render(l.Plugin, l.Stream, l.At, r, p.style))
}

func (p *devPrinter) event(e supervisor.Event) {
	switch e.Type {
	case supervisor.EventBuildFailed:
		p.failed[e.Plugin] = true
	case supervisor.EventBuildSucceeded:
		if p.failed[e.Plugin] {
			delete(p.failed, e.Plugin)
			p.println(p.buildFixed(e))
		}
		return
	case "pipeline.dropped":
		p.dropped(e)
		return
	}
	if s := p.devLine(e); s != "" {
		p.println(s)
	}
}

// serving is the generation serving plugin (0: none).
func (p *devPrinter) serving(plugin string) (supervisor.Status, int) {
	st, err := p.status(plugin)
	if err != nil || st.State != supervisor.StateRunning && st.State != supervisor.StateStarting || st.PID == 0 && st.Uptime == 0 {
		return st, 0
	}
	return st, st.Generation
}

// buildFixed is the line for a build that succeeds after a failure: if
// it is the code already running, nothing swaps and this is the only news.
func (p *devPrinter) buildFixed(e supervisor.Event) string {
	st, gen := p.serving(e.Plugin)
	switch {
	case gen > 0 && st.Build == e.Build:
		return fmt.Sprintf("%s: build ok again: the same code gen %d runs, which keeps serving", e.Plugin, gen)
	case gen > 0:
		return fmt.Sprintf("%s: build ok again, swapping gen %d", e.Plugin, gen)
	}
	return fmt.Sprintf("%s: build ok again, starting", e.Plugin)
}

func (p *devPrinter) dropped(e supervisor.Event) {
	name, _ := e.Detail.(string)
	if name == "" {
		name = e.Plugin
	}
	d := p.drops[name]
	if d == nil {
		d = &drops{}
		p.drops[name] = d
	}
	if d.at.IsZero() || time.Since(d.at) >= time.Second {
		p.println(fmt.Sprintf("pipeline %s: %s dropped an item: %s", name, e.Plugin, e.Error))
		d.at, d.n = time.Now(), 0
		return
	}
	d.n++
	d.last = e.Error
}

// flushDrops prints the counts of drops held back for a second.
func (p *devPrinter) flushDrops(now time.Time) {
	for name, d := range p.drops {
		if d.n > 0 && now.Sub(d.at) >= time.Second {
			p.println(fmt.Sprintf("pipeline %s: %d more items dropped in %s (last: %s)", name, d.n,
				now.Sub(d.at).Round(100*time.Millisecond), d.last))
			d.at, d.n = now, 0
		}
	}
}

// devLine is the one line dev prints for an event ("" = nothing).
func (p *devPrinter) devLine(e supervisor.Event) string {
	switch e.Type {
	case supervisor.EventSwapFinished:
		if e.Report == nil {
			return fmt.Sprintf("%s: now gen %d", e.Plugin, e.Generation)
		}
		return reportLine(e.Plugin, *e.Report)
	case supervisor.EventBuildFailed:
		var b strings.Builder
		if _, gen := p.serving(e.Plugin); gen > 0 {
			fmt.Fprintf(&b, "%s: build failed (gen %d keeps serving):", e.Plugin, gen)
		} else {
			fmt.Fprintf(&b, "%s: build failed (nothing serves yet; save a fix):", e.Plugin)
		}
		for _, l := range strings.Split(strings.TrimSpace(e.Error), "\n") {
			b.WriteString("\n  " + relative(l))
		}
		return b.String()
	case supervisor.EventSwapFailed:
		msg := strings.TrimPrefix(e.Error, supervisor.ErrSwapFailed.Error()+": ")
		if r := e.Report; r != nil && r.From > 0 {
			return fmt.Sprintf("%s: swap to gen %d failed, gen %d keeps serving: %s", e.Plugin, e.Generation, r.From, msg)
		}
		return fmt.Sprintf("%s: start failed: %s", e.Plugin, msg)
	case supervisor.EventFetchFailed:
		if _, gen := p.serving(e.Plugin); gen > 0 {
			return fmt.Sprintf("%s: fetch failed, gen %d keeps serving: %s", e.Plugin, gen, e.Error)
		}
		return fmt.Sprintf("%s: fetch failed (nothing serves yet): %s", e.Plugin, e.Error)
	case supervisor.EventPluginCrashed:
		msg := e.Error
		if !p.quiet {
			// Its last words were printed above, as the plugin wrote them.
			if i := strings.Index(msg, "; last output: "); i >= 0 {
				msg = msg[:i] + " (its output is above)"
			}
		}
		return fmt.Sprintf("%s: gen %d crashed: %s", e.Plugin, e.Generation, msg)
	case supervisor.EventPluginRestarted:
		return fmt.Sprintf("%s: restarted as gen %d", e.Plugin, e.Generation)
	case supervisor.EventPluginStarted:
		return fmt.Sprintf("%s: serving (gen %d)", e.Plugin, e.Generation)
	case supervisor.EventPluginAdded:
		return fmt.Sprintf("%s: added", e.Plugin)
	case supervisor.EventPluginRemoved:
		return fmt.Sprintf("%s: removed (its state is kept until `plugvisor state rm %s`)", e.Plugin, e.Plugin)
	case supervisor.EventConfigApplied:
		return "config applied"
	}
	return ""
}
