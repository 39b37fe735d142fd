// Package logstream reads what plugins print — plain lines, structured log
// lines (zerolog-style JSON, the Python SDK's logging format) and
// multi-line panics and tracebacks — into records with their real level,
// time and fields, and renders them for a terminal: prefixed with the
// plugin's name, colored per plugin.
package logstream

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Levels, as zerolog names them.
const (
	Debug = "debug"
	Info  = "info"
	Warn  = "warn"
	Error = "error"
	Fatal = "fatal"
	Panic = "panic"
)

// Record is one parsed output line.
type Record struct {
	Time    time.Time      // the plugin's own timestamp; zero when the line had none
	Level   string         // one of the levels above, "" for plain output
	Message string         // the message, or the line as printed
	Fields  map[string]any // structured fields besides level, time and message
	Cont    bool           // a continuation of a multi-line block (stack frame, traceback line)
}

var (
	// The Python SDK's logging format: "2026-01-02 15:04:05,123 INFO plugvisor.x: msg".
	pyLog = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([^:]+): (.*)$`)
	// A Go stack frame's function line: "main.f(...)", "pkg/x.(*T).m(0x1)".
	goFrame = regexp.MustCompile(`^[\w.\-/]+(\.\(\*?[\w\[\]]+\))?\.[\w\[\].]+\(.*\)$`)
	pyLevel = map[string]string{"DEBUG": Debug, "INFO": Info, "WARNING": Warn, "ERROR": Error, "CRITICAL": Fatal}
)

// Parse reads one line a plugin printed on stream ("stdout" or "stderr").
func Parse(stream, line string) Record {
	if strings.HasPrefix(line, "{") {
		if r, ok := parseJSON(line); ok {
			return r
		}
	}
	if m := pyLog.FindStringSubmatch(line); m != nil {
		t, _ := time.ParseInLocation("2006-01-02 15:04:05,000", m[1], time.Local)
		return Record{Time: t, Level: pyLevel[m[2]], Message: m[4], Fields: map[string]any{"logger": m[3]}}
	}
	switch {
	case strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: "):
		return Record{Level: Panic, Message: line}
	case line == "Traceback (most recent call last):":
		return Record{Level: Error, Message: line}
	case continuation(line):
		return Record{Message: line, Cont: true}
	}
	return Record{Message: line}
}

// continuation reports lines that belong to the block above them: indented
// lines (stack frames, traceback entries), goroutine headers, Go frame
// function lines.
func continuation(line string) bool {
	if line == "" {
		return false
	}
	if line[0] == ' ' || line[0] == '\t' || strings.HasPrefix(line, "goroutine ") ||
		strings.HasPrefix(line, "[recovered]") || strings.HasPrefix(line, "created by ") {
		return true
	}
	return goFrame.MatchString(line)
}

func parseJSON(line string) (Record, bool) {
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return Record{}, false
	}
	lvl, ok := take(m, "level", "lvl", "severity")
	if !ok {
		return Record{}, false // some JSON the plugin printed, not a log line
	}
	r := Record{Level: normLevel(lvl)}
	if msg, ok := take(m, "message", "msg"); ok {
		r.Message = fmt.Sprint(msg)
	}
	if t, ok := take(m, "time", "ts", "timestamp"); ok {
		r.Time = parseTime(t)
	}
	if len(m) > 0 {
		r.Fields = m
	}
	return r, true
}

func take(m map[string]any, keys ...string) (any, bool) {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			delete(m, k)
			return v, true
		}
	}
	return nil, false
}

func normLevel(v any) string {
	s := strings.ToLower(fmt.Sprint(v))
	switch s {
	case "trace", "debug":
		return Debug
	case "info", "information", "notice":
		return Info
	case "warn", "warning":
		return Warn
	case "error", "err":
		return Error
	case "fatal", "critical", "crit":
		return Fatal
	case "panic":
		return Panic
	}
	return Info
}

func parseTime(v any) time.Time {
	switch t := v.(type) {
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z0700", "2006-01-02 15:04:05"} {
			if p, err := time.Parse(layout, t); err == nil {
				return p
			}
		}
	case float64:
		sec := int64(t)
		return time.Unix(sec, int64((t-float64(sec))*1e9))
	}
	return time.Time{}
}

// Style says how Render writes.
type Style struct {
	Color bool // ANSI colors (a terminal)
	Width int  // name column width; 0 = the name's own length
}

var palette = []string{"\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m", "\x1b[34m", "\x1b[96m", "\x1b[95m", "\x1b[93m"}

const reset, dim, bold = "\x1b[0m", "\x1b[2m", "\x1b[1m"

var levelTags = map[string]string{Debug: "DBG", Info: "INF", Warn: "WRN", Error: "ERR", Fatal: "FTL", Panic: "PNC"}
var levelColors = map[string]string{Debug: "\x1b[90m", Info: "\x1b[32m", Warn: "\x1b[33m", Error: "\x1b[31m", Fatal: "\x1b[31;1m", Panic: "\x1b[31;1m"}

// Color is the ANSI color of a plugin's prefix: stable per name.
func Color(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return palette[h.Sum32()%uint32(len(palette))]
}

// Render formats r as one terminal line prefixed with plugin's name; at is
// when it arrived (used when the line carried no time). A continuation
// line keeps its text exactly as printed.
func Render(plugin, stream string, at time.Time, r Record, st Style) string {
	var b strings.Builder
	name := plugin
	if st.Width > len(name) {
		name += strings.Repeat(" ", st.Width-len(name))
	}
	paint := func(color, s string) {
		if st.Color && color != "" {
			b.WriteString(color + s + reset)
		} else {
			b.WriteString(s)
		}
	}
	paint(Color(plugin), name+" |")
	b.WriteByte(' ')
	if r.Cont {
		b.WriteString(r.Message)
		return b.String()
	}
	t := r.Time
	if t.IsZero() {
		t = at
	}
	paint(dim, t.Local().Format("15:04:05.000"))
	b.WriteByte(' ')
	switch {
	case r.Level != "":
		paint(levelColors[r.Level], levelTags[r.Level])
	case stream == "stderr":
		paint(dim, "err")
	default:
		paint(dim, "out")
	}
	b.WriteByte(' ')
	b.WriteString(r.Message)
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(' ')
		paint(dim, k+"=")
		b.WriteString(fieldValue(r.Fields[k]))
	}
	return b.String()
}

func fieldValue(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" || strings.ContainsAny(x, " \t\"=") {
			return strconv.Quote(x)
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
