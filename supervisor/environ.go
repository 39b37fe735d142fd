package supervisor

import (
	"runtime"
	"slices"
	"strings"
)

// minimalEnv is what every plugin process gets of the host's environment:
// enough to find programs, files, the user's locale, time zone and CA
// certificates, and nothing that tends to hold secrets. More is passed by
// name with env_inherit, or set with the plugin's env table.
var minimalEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
	// Windows needs these to start processes and find its own files.
	"SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT", "TEMP", "TMP", "USERPROFILE", "APPDATA", "LOCALAPPDATA"}

// baseEnv picks from host (os.Environ form) the minimal set, every LC_*
// variable and the names in inherit. Nothing of plugvisor's own
// (PLUGVISOR_*) passes, even when named: the host sets those itself.
func baseEnv(host, inherit []string) []string {
	var env []string
	for _, kv := range host {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.HasPrefix(k, "PLUGVISOR_") {
			continue
		}
		if named(minimalEnv, k) || strings.HasPrefix(k, "LC_") || named(inherit, k) {
			env = append(env, kv)
		}
	}
	return env
}

// named reports whether k is in names; Windows spells variables in any case.
func named(names []string, k string) bool {
	if runtime.GOOS == "windows" {
		return slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, k) })
	}
	return slices.Contains(names, k)
}
