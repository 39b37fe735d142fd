//go:build unix && !linux && !darwin

package proc

// startTime cannot be read portably here: 0 means unknown, so a recorded
// process is only killed when its pid is gone (its group may live on).
func startTime(pid int) (uint64, bool) { return 0, Alive(pid) }
