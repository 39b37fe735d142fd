package host

import (
	"context"
	"testing"

	"github.com/plugvisor/plugvisor/config"
)

// BenchmarkTypedCall compares a typed call (schema check cached, JSON in
// and out) with the untyped one on the in-process upper builtin.
func BenchmarkTypedCall(b *testing.B) {
	cfg := config.New(b.TempDir())
	cfg.Supervisor.API = ""
	cfg.Supervisor.Mode = config.ModeInproc
	cfg.Supervisor.StateDir = b.TempDir()
	if _, err := cfg.AddPlugin("upper", "upper", nil, config.Registry(builtinsOrDefault(nil))); err != nil {
		b.Fatal(err)
	}
	h, err := New(cfg, Options{NoWatch: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-h.Started()
	fn := Func[string, string](h, "upper.lower")
	if _, err := fn.Call(ctx, "warm"); err != nil {
		b.Fatal(err)
	}
	b.Run("untyped", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.Call(ctx, "upper", "lower", []byte(`"ABC"`)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("typed", func(b *testing.B) {
		for b.Loop() {
			if _, err := fn.Call(ctx, "ABC"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
