package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends one sd_notify(3) message ("READY=1", "STOPPING=1",
// "WATCHDOG=1", "STATUS=…") to $NOTIFY_SOCKET, the datagram socket systemd
// hands a Type=notify service; it does nothing when the variable is unset.
// A leading '@' names an abstract socket, which Go's net package maps to
// the leading NUL byte the kernel expects.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// watchdogInterval is how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, when it is set for this process (0 otherwise).
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
