package supervisor

// ipcAddress is a channel's address: mangos ipc:// is a named pipe on
// Windows (\\.\pipe\<name>), named after this run's socket dir so runs
// and hosts do not meet. A pipe vanishes with its last handle: no path
// to remove.
func ipcAddress(sockDir, name string) (addr, path string, err error) {
	return "ipc://plugvisor-" + scopeOf(sockDir) + "-" + name, "", nil
}
