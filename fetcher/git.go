package fetcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"
)

// gitGetter is go-getter's git getter (detection, addresses, ?ref=,
// ?depth=, ?sshkey=) with a Get of our own: go-getter's always runs
// `git submodule update --init --recursive`, which makes a fetched
// repository choose further URLs to fetch. Here submodules are fetched
// only when the plugin allows it, and git never prompts.
type gitGetter struct {
	*getter.GitGetter
	submodules bool
	skipped    *bool // set when the repository has submodules that were not fetched
}

func (g gitGetter) Get(ctx context.Context, req *getter.Request) error {
	if _, err := exec.LookPath("git"); err != nil {
		return errors.New("git must be installed and on PATH to fetch a git source")
	}
	u := *req.URL()
	q := u.Query()
	ref, sshKey := q.Get("ref"), q.Get("sshkey")
	depth, _ := strconv.Atoi(q.Get("depth"))
	q.Del("ref")
	q.Del("sshkey")
	q.Del("depth")
	u.RawQuery = q.Encode()

	env := append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if sshKey != "" {
		raw, err := base64.StdEncoding.DecodeString(sshKey)
		if err != nil {
			return fmt.Errorf("sshkey is not base64: %w", err)
		}
		f, err := os.CreateTemp("", "plugvisor-key")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return err
		}
		_, err = f.Write(raw)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		env = append(env, "GIT_SSH_COMMAND=ssh -i "+f.Name())
	}
	args := []string{"clone", "--no-recurse-submodules"}
	if depth > 0 {
		args = append(args, "--depth", strconv.Itoa(depth))
	}
	// "--" so no part of the address is read as an option.
	if err := runGit(ctx, "", env, append(args, "--", u.String(), req.Dst)...); err != nil {
		return err
	}
	if ref != "" {
		if err := runGit(ctx, req.Dst, env, "checkout", ref); err != nil {
			return err
		}
	}
	if _, err := os.Stat(req.Dst + "/.gitmodules"); err != nil {
		return nil // no submodules
	}
	if !g.submodules {
		*g.skipped = true
		return nil
	}
	args = []string{"submodule", "update", "--init", "--recursive"}
	if depth > 0 {
		args = append(args, "--depth", strconv.Itoa(depth))
	}
	return runGit(ctx, req.Dst, env, args...)
}

// runGit runs git in dir; its output goes into the error when it fails.
func runGit(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(out.String()))
	}
	return nil
}
