package sdk

// The plugin side of symbol instances: opening a source or sink on the
// host's request and running it on its channel.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/transport"
)

func (s *server) symLogger(kind, symbol string) *zerolog.Logger {
	l := s.log.With().Str(kind, symbol).Logger()
	return &l
}

func (s *server) open(f transport.Frame) (err error) {
	var m transport.OpenMsg
	if err := transport.Decode(f, &m); err != nil {
		return err
	}
	s.mu.Lock()
	_, dup := s.instances[m.Instance]
	s.mu.Unlock()
	if dup {
		return fmt.Errorf("instance %q is already open", m.Instance)
	}
	in := &instance{id: m.Instance, kind: m.Kind, symbol: m.Symbol, done: make(chan struct{})}
	ictx, cancel := context.WithCancel(s.ctx)
	in.cancel = cancel
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	var sym interface{ Configure(map[string]any) error }
	switch m.Kind {
	case transport.KindFunctions:
	case transport.KindSource:
		mk, ok := s.p.Sources[m.Symbol]
		if !ok {
			return fmt.Errorf("no source %q in plugin %s", m.Symbol, s.p.Name)
		}
		in.src = mk()
		sym = in.src
	case transport.KindSink:
		mk, ok := s.p.Sinks[m.Symbol]
		if !ok {
			return fmt.Errorf("no sink %q in plugin %s", m.Symbol, s.p.Name)
		}
		in.snk = mk()
		sym = in.snk
	default:
		return fmt.Errorf("unknown instance kind %q", m.Kind)
	}
	if sym != nil {
		in.scope = s.state.get(m.Instance)
		in.sctx = &symCtx{Context: ictx, state: in.scope, log: s.symLogger(m.Kind, m.Symbol), config: s.config}
		if err := sym.Configure(s.config); err != nil {
			return fmt.Errorf("%s %s: configure: %w", m.Kind, m.Symbol, err)
		}
		if in.snk != nil {
			if err := in.snk.Open(in.sctx); err != nil {
				return fmt.Errorf("sink %s: open: %w", m.Symbol, err)
			}
		}
	}
	c, err := s.dial(m.Address)
	if err != nil {
		if in.snk != nil {
			_ = in.snk.Close(in.sctx) // opened above: release what it holds
		}
		return err
	}
	in.conn = c
	s.mu.Lock()
	s.instances[m.Instance] = in
	s.mu.Unlock()
	switch m.Kind {
	case transport.KindFunctions:
		close(in.done)
		go s.serveCalls(c)
	case transport.KindSource:
		go s.runSource(in)
	case transport.KindSink:
		close(in.done)
		go s.runSink(in)
	}
	return nil
}

func (s *server) runSource(in *instance) {
	defer close(in.done)
	emit := func(item any) error {
		b, err := encodeItem(item)
		if err != nil {
			return fmt.Errorf("source %s: %w", in.symbol, err)
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		in.seq++
		// Sent even after ctx ended: everything emitted before Open returns
		// reaches the host ahead of the end-of-stream marker.
		return in.conn.Send(s.ctx, transport.Frame{Type: transport.Data, ID: in.seq, Payload: b})
	}
	err := in.src.Open(in.sctx, emit)
	eos := transport.Frame{Type: transport.EOS}
	if err != nil && !errors.Is(err, context.Canceled) {
		eos.Payload = transport.JSON(transport.ErrorMsg{Error: err.Error()})
		in.sctx.log.Error().Err(err).Msg("source ended with an error")
	}
	in.mu.Lock()
	in.stopped = true
	eos.ID = in.seq
	in.mu.Unlock()
	if err := in.conn.Send(s.ctx, eos); err != nil && !errors.Is(err, transport.ErrClosed) {
		s.fail(fmt.Errorf("source %s: end of stream: %w", in.symbol, err))
	}
}

func encodeItem(item any) ([]byte, error) {
	switch v := item.(type) {
	case []byte:
		return v, nil
	case json.RawMessage:
		return v, nil
	}
	b, err := json.Marshal(item)
	if err != nil {
		return nil, fmt.Errorf("item of type %T cannot be JSON-encoded: %w", item, err)
	}
	return b, nil
}

func (s *server) runSink(in *instance) {
	for {
		var last uint64
		err := in.conn.Recv(func(f transport.Frame) error {
			switch f.Type {
			case transport.Data:
				in.mu.Lock()
				defer in.mu.Unlock()
				if in.stopped {
					return fmt.Errorf("%w: data for sink %s after it was stopped", transport.ErrMalformed, in.symbol)
				}
				if err := in.snk.Collect(in.sctx, json.RawMessage(f.Payload)); err != nil {
					in.sctx.log.Error().Err(err).Uint64("seq", f.ID).Msg("collect failed")
				}
				last = f.ID
			case transport.Barrier:
				last = 0
				return in.conn.Send(s.ctx, transport.Frame{Type: transport.Ack, ID: f.ID})
			default:
				return fmt.Errorf("%w: unexpected %s frame on sink %s", transport.ErrMalformed, f.Type, in.symbol)
			}
			return nil
		})
		if err == nil && last > 0 {
			err = in.conn.Send(s.ctx, transport.Frame{Type: transport.Ack, ID: last})
		}
		if err != nil {
			if !errors.Is(err, transport.ErrClosed) {
				s.fail(fmt.Errorf("sink %s: %w", in.symbol, err))
			}
			return
		}
	}
}
