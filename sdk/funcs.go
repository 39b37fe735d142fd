package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/rs/zerolog"
)

// acceptedForms is quoted in the error for a function with a bad signature.
const acceptedForms = "func(), func() error, func(In) error, func() (Out, error), func(In) (Out, error), " +
	"each optionally with a leading context.Context"

var (
	ctxType   = reflect.TypeOf((*context.Context)(nil)).Elem()
	errType   = reflect.TypeOf((*error)(nil)).Elem()
	bytesType = reflect.TypeOf([]byte(nil))
)

// function is a checked plugin function, callable with JSON in and out.
type function struct {
	name  string
	fn    reflect.Value
	ctx   bool         // takes a leading context
	in    reflect.Type // nil: no input
	out   bool         // returns a value before the error
	errOK bool         // returns an error

	logOnce sync.Once
	log     *zerolog.Logger
}

// logger is the function's logger, made once.
func (f *function) logger(s *server) *zerolog.Logger {
	f.logOnce.Do(func() { f.log = s.symLogger("function", f.name) })
	return f.log
}

// checkFunction validates f against the accepted signatures.
func checkFunction(name string, f any) (*function, error) {
	v := reflect.ValueOf(f)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		return nil, fmt.Errorf("function %q is a %T, not a func; accepted forms: %s", name, f, acceptedForms)
	}
	t := v.Type()
	fn := &function{name: name, fn: v}
	ins := t.NumIn()
	i := 0
	if ins > 0 && t.In(0) == ctxType {
		fn.ctx = true
		i = 1
	}
	switch ins - i {
	case 0:
	case 1:
		fn.in = t.In(i)
	default:
		return nil, fmt.Errorf("function %q has signature %s: too many parameters; accepted forms: %s", name, t, acceptedForms)
	}
	if t.IsVariadic() {
		return nil, fmt.Errorf("function %q has signature %s: variadic; accepted forms: %s", name, t, acceptedForms)
	}
	switch t.NumOut() {
	case 0:
		if fn.in != nil {
			return nil, fmt.Errorf("function %q has signature %s: a function with an input must return an error; accepted forms: %s", name, t, acceptedForms)
		}
	case 1:
		if t.Out(0) != errType {
			return nil, fmt.Errorf("function %q has signature %s: a single result must be error; accepted forms: %s", name, t, acceptedForms)
		}
		fn.errOK = true
	case 2:
		if t.Out(1) != errType {
			return nil, fmt.Errorf("function %q has signature %s: the second result must be error; accepted forms: %s", name, t, acceptedForms)
		}
		fn.out, fn.errOK = true, true
	default:
		return nil, fmt.Errorf("function %q has signature %s: too many results; accepted forms: %s", name, t, acceptedForms)
	}
	return fn, nil
}

// call decodes input, calls the function and encodes its output. A
// returned error is the function's own; decoding problems are wrapped.
func (f *function) call(ctx context.Context, input []byte) ([]byte, error) {
	args := make([]reflect.Value, 0, 2)
	if f.ctx {
		args = append(args, reflect.ValueOf(ctx))
	}
	if f.in != nil {
		arg := reflect.New(f.in)
		if f.in == bytesType {
			arg.Elem().SetBytes(input)
		} else if len(input) > 0 {
			if err := json.Unmarshal(input, arg.Interface()); err != nil {
				return nil, fmt.Errorf("function %q: input does not decode into %s: %w", f.name, f.in, err)
			}
		}
		args = append(args, arg.Elem())
	}
	res := f.fn.Call(args)
	if f.errOK {
		if e := res[len(res)-1]; !e.IsNil() {
			return nil, e.Interface().(error)
		}
	}
	if !f.out {
		return []byte("null"), nil
	}
	out := res[0]
	if out.Type() == bytesType {
		return out.Bytes(), nil
	}
	b, err := json.Marshal(out.Interface())
	if err != nil {
		return nil, fmt.Errorf("function %q: result of type %s cannot be JSON-encoded: %w", f.name, out.Type(), err)
	}
	return b, nil
}
