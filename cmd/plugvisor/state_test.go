package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A damaged state.db: run refuses with one line naming the file and the
// way out (no panic, no stack); run --reset-state moves it aside, says so
// and serves.
func TestDamagedStateDB(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte("[supervisor]\napi = \"127.0.0.1:0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, ".plugvisor")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(stateDir, "state.db")
	db, err := bolt.Open(dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("checkpoints"))
		for i := 0; err == nil && i < 200; i++ {
			err = b.Put([]byte(strings.Repeat("k", i+1)), make([]byte, 100))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2 * 4096; i < len(b); i++ { // every page after the two meta pages
		b[i] = byte(0x5A ^ i)
	}
	if err := os.WriteFile(dbPath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	_, stderr, code := cli(t, nil, "run", "-c", cfgPath)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if code == 0 || strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") ||
		!strings.Contains(last, dbPath) || !strings.Contains(last, "--reset-state") {
		t.Fatalf("run on a damaged state.db: exit %d, want a refusal naming %s and --reset-state in one line; stderr:\n%s", code, dbPath, stderr)
	}

	cmd := exec.Command(binary, "run", "--reset-state", "--log-level", "warn", "-c", cfgPath)
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	seen := make(chan string, 1)
	go func() {
		var out strings.Builder
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "api listening on ") {
				seen <- out.String()
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case out := <-seen:
		if !strings.Contains(out, "moved it to "+dbPath+".damaged-") || !strings.Contains(out, "empty state") {
			t.Errorf("--reset-state did not say where the damaged file went:\n%s", out)
		}
	case err := <-exited:
		t.Fatalf("run --reset-state exited: %v", err)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("run --reset-state never listened")
	}
	if aside, _ := filepath.Glob(dbPath + ".damaged-*"); len(aside) != 1 {
		t.Errorf("damaged file not moved aside: %v", aside)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("did not stop on SIGTERM")
	}
}
