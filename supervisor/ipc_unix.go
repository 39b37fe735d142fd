//go:build !windows

package supervisor

import (
	"fmt"
	"path/filepath"
)

// ipcAddress is a channel's address: a Unix socket in the socket dir,
// whose path it also returns for removal.
func ipcAddress(sockDir, name string) (addr, path string, err error) {
	path = filepath.Join(sockDir, name)
	if len(path) > 100 {
		return "", "", fmt.Errorf("socket path %s is %d bytes, over the ~100-byte Unix limit: set a shorter state_dir or TMPDIR", path, len(path))
	}
	return "ipc://" + path, path, nil
}
