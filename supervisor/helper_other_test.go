//go:build !linux

package supervisor_test

import "github.com/plugvisor/plugvisor/sdk"

// osHelper: the containment helpers need Linux (setsid, /proc).
func osHelper(string, sdk.Env) (int, bool) { return 0, false }
