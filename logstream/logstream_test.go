package logstream

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	r := Parse("stderr", `{"level":"warn","plugin":"x","generation":2,"time":"2026-01-02T03:04:05.5Z","message":"slow","ms":12.5}`)
	if r.Level != Warn || r.Message != "slow" || r.Time.IsZero() || r.Fields["ms"] != 12.5 || r.Fields["plugin"] != "x" {
		t.Fatalf("zerolog line: %+v", r)
	}
	if _, ok := r.Fields["level"]; ok {
		t.Fatalf("level kept as a field: %+v", r.Fields)
	}
	if r := Parse("stdout", `{"id":1}`); r.Level != "" || r.Message != `{"id":1}` {
		t.Fatalf("JSON data without a level is plain output: %+v", r)
	}
	if r := Parse("stderr", "2026-01-02 03:04:05,123 WARNING plugvisor.demo: careful"); r.Level != Warn || r.Message != "careful" || r.Time.Nanosecond() != 123e6 {
		t.Fatalf("python logging line: %+v", r)
	}
	for _, l := range []string{"goroutine 7 [running]:", "main.double(0x2a)", "\t/src/main.go:12 +0x1d", "  File \"main.py\", line 3, in f",
		"github.com/x/y.(*T).m(...)", "created by main.main in goroutine 1"} {
		if !Parse("stderr", l).Cont {
			t.Errorf("%q is not a continuation", l)
		}
	}
	if r := Parse("stderr", "panic: boom"); r.Level != Panic || r.Cont {
		t.Fatalf("panic line: %+v", r)
	}
	if r := Parse("stdout", "hello world"); r.Cont || r.Level != "" {
		t.Fatalf("plain line: %+v", r)
	}
}

func TestRender(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	got := Render("demo", "stderr", at, Parse("stderr", `{"level":"error","message":"bad","key":"a b"}`), Style{Width: 6})
	if got != `demo   | 03:04:05.000 ERR bad key="a b"` {
		t.Fatalf("got %q", got)
	}
	cont := Render("demo", "stderr", at, Parse("stderr", "\tmain.go:3"), Style{})
	if cont != "demo | \tmain.go:3" {
		t.Fatalf("continuation %q", cont)
	}
	col := Render("demo", "stdout", at, Parse("stdout", "hi"), Style{Color: true})
	if !strings.HasPrefix(col, Color("demo")+"demo |") || Color("demo") == Color("other-plugin-name") && Color("a") == Color("b") && Color("c") == Color("d") {
		t.Fatalf("colored %q", col)
	}
}
