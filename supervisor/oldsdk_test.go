package supervisor_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/transport"
)

// oldSDKPlugin is a plugin as an SDK from before call batches would
// write it: its manifest announces no features and it answers only single
// call frames — any other frame on its call channel ends it. It serves
// function "double" (and the control requests a swap needs).
func oldSDKPlugin(env sdk.Env) int {
	ctx := context.Background()
	ctl, err := transport.Dial(env.Control, transport.Options{MaxFrame: env.MaxFrame})
	if err != nil {
		return 1
	}
	defer ctl.Close()
	man := transport.Manifest{Name: "old", Version: "0.9.0", StateVersion: "1", Functions: []string{"double"}}
	if ctl.Send(ctx, transport.Frame{Type: transport.Hello,
		Payload: transport.JSON(transport.HelloMsg{Protocol: transport.Version, Token: env.Token, PID: os.Getpid(), Manifest: man})}) != nil {
		return 1
	}
	fail := make(chan error, 1)
	serve := func(c *transport.Conn) {
		for {
			err := c.Recv(func(f transport.Frame) error {
				if f.Type != transport.Call {
					return fmt.Errorf("old sdk: unexpected %s frame on the call channel", f.Type)
				}
				_, in, err := transport.ParseCall(f.Payload)
				if err != nil {
					return err
				}
				n, err := strconv.Atoi(string(in))
				if err != nil {
					return c.Send(ctx, transport.Frame{Type: transport.Fail, ID: f.ID, Payload: transport.JSON(transport.ErrorMsg{Error: err.Error()})})
				}
				return c.Send(ctx, transport.Frame{Type: transport.Result, ID: f.ID, Payload: []byte(strconv.Itoa(2 * n))})
			})
			if err != nil {
				fail <- err
				return
			}
		}
	}
	go func() {
		for {
			err := ctl.Recv(func(f transport.Frame) error {
				reply := transport.Frame{Type: transport.OK, ID: f.ID}
				switch f.Type {
				case transport.Welcome, transport.Ping:
					if f.Type == transport.Ping {
						reply.Type = transport.Pong
						break
					}
					return nil
				case transport.Open:
					var m transport.OpenMsg
					if err := transport.Decode(f, &m); err != nil {
						return err
					}
					c, err := transport.Dial(m.Address, transport.Options{MaxFrame: env.MaxFrame})
					if err != nil {
						return err
					}
					go serve(c)
				case transport.Snapshot:
					reply = transport.Frame{Type: transport.State, ID: f.ID, Payload: binary.BigEndian.AppendUint32(nil, 0)}
				case transport.Shutdown:
					os.Exit(0)
				}
				return ctl.Send(ctx, reply)
			})
			if err != nil {
				fail <- err
				return
			}
		}
	}()
	fmt.Fprintln(os.Stderr, "old sdk:", <-fail)
	return 1
}
