//go:build !linux

package main

import "github.com/rs/zerolog"

// reapAdopted is Linux-only: PID 1 in a container is a Linux situation.
func reapAdopted(*zerolog.Logger) (stop func()) { return func() {} }
