//go:build !race

package supervisor_test

// raceFactor widens memory bounds under the race detector (see race_on_test.go).
const raceFactor = 1
