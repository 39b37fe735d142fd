package sdk

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// scope is the state of one symbol instance. It is safe for concurrent use:
// functions may run in parallel.
type scope struct {
	mu sync.Mutex
	kv map[string][]byte
}

func newScope(kv map[string][]byte) *scope {
	if kv == nil {
		kv = map[string][]byte{}
	}
	return &scope{kv: kv}
}

func (s *scope) PutState(key string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("state %q: value of type %T cannot be JSON-encoded: %w", key, value, err)
	}
	s.mu.Lock()
	s.kv[key] = b
	s.mu.Unlock()
	return nil
}

func (s *scope) GetState(key string, into any) (bool, error) {
	s.mu.Lock()
	b, ok := s.kv[key]
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, into); err != nil {
		return true, fmt.Errorf("state %q: stored value does not decode into %T: %w", key, into, err)
	}
	return true, nil
}

func (s *scope) DeleteState(key string) error {
	s.mu.Lock()
	delete(s.kv, key)
	s.mu.Unlock()
	return nil
}

func (s *scope) IncrCounter(key string, delta int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.counter(key)
	if err != nil {
		return 0, err
	}
	n += delta
	s.kv[key] = strconv.AppendInt(nil, n, 10)
	return n, nil
}

func (s *scope) GetCounter(key string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counter(key)
}

func (s *scope) counter(key string) (int64, error) {
	b, ok := s.kv[key]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("state %q holds %s, not a counter", key, b)
	}
	return n, nil
}

// copy returns a snapshot of the scope's keys and values.
func (s *scope) copy() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.kv))
	for k, v := range s.kv {
		out[k] = v // values are never mutated in place, only replaced
	}
	return out
}

// stateStore holds every scope of the process.
type stateStore struct {
	mu     sync.Mutex
	scopes map[string]*scope
}

func (st *stateStore) get(name string) *scope {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.scopes == nil {
		st.scopes = map[string]*scope{}
	}
	s, ok := st.scopes[name]
	if !ok {
		s = newScope(nil)
		st.scopes[name] = s
	}
	return s
}
