package main

import "os"

// killPID kills one process (SIGKILL on Unix), portably.
func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
