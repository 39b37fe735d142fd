package sdk

import (
	"errors"
	"fmt"
	"sync"

	"github.com/plugvisor/plugvisor/transport"
)

// ErrReplicatedState is what a function's state write returns, and what
// its call fails with, while the plugin runs with replicas > 1: every
// replica would keep its own copy of the function state, and the copies
// would split. Sources and sinks run on one instance and may write.
var ErrReplicatedState = errors.New("function state cannot be written with replicas > 1")

// replicatedState is the function scope of one call of a replicated
// plugin: reads pass, writes are refused and remembered, so the call
// fails even when the function ignores the error.
type replicatedState struct {
	*scope
	plugin, fn string
	replicas   int

	mu    sync.Mutex
	wrote error // the first refused write
}

func (r *replicatedState) PutState(key string, _ any) error { return r.refuse("put", key) }
func (r *replicatedState) DeleteState(key string) error     { return r.refuse("delete", key) }
func (r *replicatedState) IncrCounter(key string, _ int64) (int64, error) {
	return 0, r.refuse("incr", key)
}

func (r *replicatedState) refuse(op, key string) error {
	err := fmt.Errorf("%w: function %s of plugin %s tried to %s state %q, but the plugin runs with replicas = %d and each replica would keep its own copy — keep the state in a source or sink, or set replicas = 1",
		ErrReplicatedState, r.fn, r.plugin, op, key, r.replicas)
	r.mu.Lock()
	if r.wrote == nil {
		r.wrote = err
	}
	r.mu.Unlock()
	return err
}

// refused is the first refused write of the call, or nil.
func (r *replicatedState) refused() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wrote
}

// functionState is the state a call of fn sees: the shared function scope,
// guarded when the plugin is replicated (rs is then not nil).
func (s *server) functionState(fn string) (st State, rs *replicatedState) {
	sc := s.state.get(functionScope)
	if s.replicas <= 1 {
		return sc, nil
	}
	rs = &replicatedState{scope: sc, plugin: s.p.Name, fn: fn, replicas: s.replicas}
	return rs, rs
}

// replicatedFail answers a call (or a whole batch) that wrote state on a
// replicated plugin: the code lets the host say so in last_error.
func replicatedFail(id uint64, err error) transport.Frame {
	return transport.Frame{Type: transport.Fail, ID: id,
		Payload: transport.JSON(transport.ErrorMsg{Error: err.Error(), Code: transport.CodeReplicatedState})}
}
