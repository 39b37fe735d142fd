//go:build !unix

package api

// fdLimit is unknown here: the connection cap stays as configured.
func fdLimit() int { return 0 }
