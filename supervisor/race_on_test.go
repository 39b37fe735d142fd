//go:build race

package supervisor_test

// raceFactor widens memory bounds: the race detector's shadow memory
// multiplies the heap's footprint.
const raceFactor = 3
