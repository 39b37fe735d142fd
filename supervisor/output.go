package supervisor

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/logstream"
)

// OutputLine is one line of a plugin's output (or a note of the
// supervisor's about it, Stream "plugvisor"), as FollowOutput delivers it.
type OutputLine struct {
	Plugin string `json:"plugin"`
	LogLine
}

// FollowOutput subscribes to every plugin's output lines as they are
// printed (for `dev` and `logs -f`); buf bounds how far a slow reader may
// fall behind before it loses the oldest lines (Dropped counts them).
func (s *Supervisor) FollowOutput(buf int) *Feed[OutputLine] { return s.output.subscribe(buf) }

// record keeps a note of the supervisor's in the plugin's ring, hands it
// to followers and logs it. Plugin output takes outputOf's path (cut,
// rate-limited), which calls follow and logLine for the lines it admits.
func (p *Plugin) record(l LogLine) {
	p.logs.add(l)
	p.follow(l)
	p.logLine(l)
}

// follow hands a line to FollowOutput's subscribers.
func (p *Plugin) follow(l LogLine) { p.sup.output.publish(OutputLine{Plugin: p.name, LogLine: l}) }

// logLine logs a line: a structured log line of the plugin's with its own
// level and fields (JSON in run mode, not JSON inside a string).
func (p *Plugin) logLine(l LogLine) {
	if p.sup.opts.QuietOutput && l.Stream != "plugvisor" {
		return
	}
	ev := p.log.Info()
	if l.Stream != "plugvisor" {
		r := logstream.Parse(l.Stream, l.Line)
		if r.Level != "" {
			lvl, err := zerolog.ParseLevel(r.Level)
			if err != nil {
				lvl = zerolog.InfoLevel
			}
			// The host's logger names the plugin, generation and stream
			// itself; the plugin's copies would be duplicate JSON keys.
			for _, k := range []string{"plugin", "generation", "stream"} {
				delete(r.Fields, k)
			}
			ev = p.log.WithLevel(lvl).Fields(r.Fields)
			if !r.Time.IsZero() {
				ev = ev.Time("plugin_time", r.Time)
			}
			ev.Int("generation", l.Generation).Str("stream", l.Stream).Msg(r.Message)
			return
		}
		ev = ev.Str("stream", l.Stream)
	}
	ev.Int("generation", l.Generation).Msg(l.Line)
}

// newLine stamps a line.
func newLine(gen int, stream, line string) LogLine {
	return LogLine{At: time.Now(), Generation: gen, Stream: stream, Line: line}
}
