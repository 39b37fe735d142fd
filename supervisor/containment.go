package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/plugvisor/plugvisor/internal/proc"
)

// envTag carries a generation's tag, "<scope>.<plugin>.<generation>", into
// its process and everything that process starts: scope is this
// state_dir's, so the tag finds descendants that left the process group
// (setsid) when the generation ends, and whatever survived a host that
// was killed when the next one starts on the same state_dir.
const envTag = "PLUGVISOR_TAG"

// procsDir holds one file per running generation, "<pid> <start time>",
// for cleaning up after a host that was killed (kill -9 skips every
// deferred cleanup).
const procsDir = "procs"

// scopeOf names a state_dir in tags and socket dir names.
func scopeOf(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:6])
}

// tag is the tag of generation num of the plugin with this short name.
func (s *Supervisor) tag(short string, num int) string {
	return s.scope + "." + short + "." + strconv.Itoa(num)
}

func (s *Supervisor) recordProc(tag string, pid int) {
	id := proc.Identify(pid)
	dir := filepath.Join(s.opts.StateDir, procsDir)
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, tag), fmt.Appendf(nil, "%d %d\n", id.Pid, id.Start), 0o600)
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot record a plugin process for cleanup after a crash")
	}
}

func (s *Supervisor) forgetProc(tag string) {
	_ = os.Remove(filepath.Join(s.opts.StateDir, procsDir, tag))
}

// reapLeftovers kills what an earlier host on this state_dir left running
// (it was killed, or its machine lost power mid-run) and removes its
// socket directories. It runs while New holds the store's lock, so no
// live host uses this state_dir.
func (s *Supervisor) reapLeftovers() {
	groups := 0
	dir := filepath.Join(s.opts.StateDir, procsDir)
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		path := filepath.Join(dir, f.Name())
		b, err := os.ReadFile(path)
		var id proc.Identity
		if err == nil {
			_, err = fmt.Sscan(string(b), &id.Pid, &id.Start)
		}
		if err == nil && id.Pid > 0 {
			// A live pid that is not the recorded process was reused: its
			// group is not ours. A dead leader's group may live on.
			if alive, same := proc.Same(id); !alive || same {
				if proc.KillGroup(id.Pid) == nil {
					groups++
				}
			}
		}
		_ = os.Remove(path)
	}
	tagged := proc.KillTagged(envTag, func(v string) bool { return strings.HasPrefix(v, s.scope+".") })
	if len(files) > 0 || tagged > 0 {
		s.log.Warn().Int("groups", groups).Int("escaped", tagged).
			Msg("killed what an earlier host on this state_dir left running")
	}
	for _, d := range s.staleSocketDirs() {
		_ = os.RemoveAll(d)
	}
}

// legacySockDir matches the socket dirs of hosts before sock-* names.
var legacySockDir = regexp.MustCompile(`^s[0-9]+$`)

// staleSocketDirs lists the socket dirs of earlier hosts on this state_dir.
func (s *Supervisor) staleSocketDirs() []string {
	var out []string
	if m, _ := filepath.Glob(filepath.Join(os.TempDir(), "plugvisor-"+s.scope+"-*")); m != nil {
		out = append(out, m...)
	}
	entries, _ := os.ReadDir(s.opts.StateDir)
	for _, e := range entries {
		if e.IsDir() && (strings.HasPrefix(e.Name(), "sock-") || legacySockDir.MatchString(e.Name())) {
			out = append(out, filepath.Join(s.opts.StateDir, e.Name()))
		}
	}
	return out
}

// socketDir makes the private socket directory of this run: under
// state_dir when the path is short enough for Unix sockets, else under
// the system temp dir, named for the state_dir so the next host finds it.
func (s *Supervisor) socketDir() (string, error) {
	abs, err := filepath.Abs(s.opts.StateDir)
	if err != nil {
		return "", err
	}
	base, prefix := abs, "sock-"
	if len(abs) > 60 {
		base, prefix = os.TempDir(), "plugvisor-"+s.scope+"-"
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		return "", fmt.Errorf("socket dir under %s: %w", base, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}
