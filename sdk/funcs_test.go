package sdk

import (
	"context"
	"strings"
	"testing"
)

func TestFunctionSignatures(t *testing.T) {
	ok := map[string]any{
		"none":     func() {},
		"err":      func() error { return nil },
		"in":       func(int) error { return nil },
		"out":      func() (string, error) { return "", nil },
		"inout":    func(int) (int, error) { return 0, nil },
		"ctx":      func(context.Context, []byte) ([]byte, error) { return nil, nil },
		"ctx-only": func(context.Context) error { return nil },
	}
	for name, f := range ok {
		if _, err := checkFunction(name, f); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]any{
		"two-in":    func(a, b int) error { return nil },
		"no-err":    func(int) int { return 0 },
		"not-func":  42,
		"in-no-out": func(int) {},
		"variadic":  func(...int) error { return nil },
	}
	for name, f := range bad {
		_, err := checkFunction(name, f)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "accepted forms") {
			t.Errorf("%s: want an error naming it and the accepted forms, got %v", name, err)
		}
	}
}

func TestFunctionCallJSON(t *testing.T) {
	f, _ := checkFunction("double", func(ctx context.Context, x int) (int, error) { return 2 * x, nil })
	out, err := f.call(context.Background(), []byte("21"))
	if err != nil || string(out) != "42" {
		t.Fatalf("double(21) = %s, %v", out, err)
	}
	if _, err := f.call(context.Background(), []byte(`"x"`)); err == nil || !strings.Contains(err.Error(), "does not decode") {
		t.Fatalf("bad input: %v", err)
	}
}

func TestScopeCounters(t *testing.T) {
	s := newScope(nil)
	for i := int64(1); i <= 3; i++ {
		if n, err := s.IncrCounter("c", 1); err != nil || n != i {
			t.Fatalf("incr = %d, %v", n, err)
		}
	}
	_ = s.PutState("s", "text")
	if _, err := s.IncrCounter("s", 1); err == nil {
		t.Fatal("incrementing a string should fail")
	}
	var v string
	if found, err := s.GetState("s", &v); !found || err != nil || v != "text" {
		t.Fatalf("get = %q %v %v", v, found, err)
	}
}
