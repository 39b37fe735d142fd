package supervisor

// SetTieToHost lets a test host start plugins without the parent-death
// signal, so the SDK's watchdog (all macOS has) is what ends them.
func SetTieToHost(tie bool) { tieToHost = tie }
