package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the name of the API token file inside the state folder.
const TokenFile = "api.token"

// minToken is the shortest token accepted from a file: 32 characters.
// EnsureToken writes 64 hex digits (256 random bits).
const minToken = 32

// TokenPath is where the daemon keeps the token for stateDir.
func TokenPath(stateDir string) string { return filepath.Join(stateDir, TokenFile) }

// EnsureToken returns the API token in stateDir/api.token, creating the
// file (256 random bits as hex, mode 0600) when it does not exist. The file
// is written under a temporary name and linked into place, so it is never
// seen half-written, never readable by others, and two daemons starting at
// once agree on one token.
func EnsureToken(stateDir string) (string, error) {
	path := TokenPath(stateDir)
	tok, err := ReadToken(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	tok = hex.EncodeToString(raw[:])
	tmp, err := writeTemp(stateDir, ".api.token-*", tok)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	defer os.Remove(tmp)
	// link fails if another daemon created the file first: use theirs.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ReadToken(path)
		}
		return "", fmt.Errorf("API token: %w", err)
	}
	return tok, nil
}

// ReadToken reads a token file. It refuses a file other users can read
// (anyone who reads it can drive the API) and one too short to be a token.
func ReadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("API token: %s is not a regular file; remove it and restart the daemon to get a new token", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("API token: %s has mode %04o, so other users can read it and drive the API: run chmod 600 %s, or delete it and restart the daemon for a new token", path, perm, path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("API token: reading %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(buf))
	if len(tok) < minToken || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("API token: %s does not hold a token (one line of at least %d characters); delete it and restart the daemon for a new one", path, minToken)
	}
	return tok, nil
}

// AddrFile is the name of the file, inside the state folder, where the
// daemon writes the URL it listens on, for clients of a config whose api
// lets the system pick the port ("127.0.0.1:0").
const AddrFile = "api.addr"

// WriteAddr records url in stateDir/api.addr (replaced atomically).
func WriteAddr(stateDir, url string) error {
	tmp, err := writeTemp(stateDir, ".api.addr-*", url)
	if err == nil {
		defer os.Remove(tmp)
		err = os.Rename(tmp, filepath.Join(stateDir, AddrFile))
	}
	if err != nil {
		return fmt.Errorf("API address file: %w", err)
	}
	return nil
}

// writeTemp writes line to a new file in dir and returns its name. The
// file is created 0600 with O_EXCL (CreateTemp): it never exists with a
// wider mode, umask can only narrow it.
func writeTemp(dir, pattern, line string) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(line + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// ReadAddr returns the URL a daemon on stateDir recorded with WriteAddr.
func ReadAddr(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, AddrFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
