package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A plugvisor built from a clone that is then deleted still runs a Python
// plugin: the SDK comes from inside the binary, not from the checkout.
func TestBinaryFromDeletedCloneRunsPython(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugvisor and runs a Python plugin")
	}
	root := repoRoot(t)
	clone := filepath.Join(t.TempDir(), "clone")
	files, err := exec.Command("git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Split(strings.TrimSpace(string(files)), "\n") {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the work tree
		}
		dst := filepath.Join(clone, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(t.TempDir(), "plugvisor")
	build := exec.Command("go", "build", "-o", bin, "./cmd/plugvisor")
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build from the clone: %v\n%s", err, out)
	}
	if err := os.RemoveAll(clone); err != nil {
		t.Fatal(err)
	}
	plug := filepath.Join(t.TempDir(), "pydemo")
	copyDir(t, filepath.Join(root, "examples", "pydemo"), plug)
	saved := binary
	binary = bin // startChild runs this binary
	defer func() { binary = saved }()
	d := startChild(t, t.TempDir(), []string{"PYTHONPATH="}, filepath.Join(plug, ".plugvisor"), "dev", "--quiet", plug)
	waitRunning(t, "http://"+d.addr, "pydemo", 60*time.Second)
	if out, errOut, code := cli(t, d.env(), "call", "pydemo.double", "21"); code != 0 || strings.TrimSpace(out) != "42" {
		t.Fatalf("call: %d %q %s", code, out, errOut)
	}
	d.stop(t)
	sdks, _ := filepath.Glob(filepath.Join(plug, ".plugvisor", "python-sdk", "*", "plugvisor", "server.py"))
	if len(sdks) != 1 {
		t.Fatalf("extracted SDK: %v", sdks)
	}
}

// new --lang python from the binary: the plugin's own test passes with
// the SDK the binary extracts (plugvisor pythonpath), and dev serves it.
func TestNewPythonScaffold(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Python and a daemon")
	}
	dir := t.TempDir()
	if out, errOut, code := cli(t, nil, "new", "--lang", "python", "pyplug", "--dir", dir); code != 0 || !strings.Contains(out, "pythonpath") {
		t.Fatalf("new --lang python: %d %s %s", code, out, errOut)
	}
	cache := t.TempDir()
	pp, errOut, code := cli(t, []string{"XDG_CACHE_HOME=" + cache}, "pythonpath")
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(pp), cache) {
		t.Fatalf("pythonpath: %d %q %s", code, pp, errOut)
	}
	test := exec.Command("python3", "-m", "unittest", "-q")
	test.Dir = filepath.Join(dir, "pyplug")
	test.Env = append(os.Environ(), "PYTHONPATH="+strings.TrimSpace(pp), "PYTHONDONTWRITEBYTECODE=1")
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("the scaffold's test: %v\n%s", err, out)
	}
	d := startChild(t, "", nil, filepath.Join(dir, "pyplug", ".plugvisor"), "dev", "--quiet", filepath.Join(dir, "pyplug"))
	waitRunning(t, "http://"+d.addr, "pyplug", 60*time.Second)
	if out, errOut, code := cli(t, d.env(), "call", "pyplug.greet", `"world"`); code != 0 || strings.TrimSpace(out) != `"hello, world (#1)"` {
		t.Fatalf("call: %d %q %s", code, out, errOut)
	}
	d.stop(t)
}
