package fetcher

// go-getter's errors reworded for users: one line, with the fix.

import (
	"fmt"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"
)

// mismatch rewords go-getter's multi-line checksum error on one line and
// keeps it reachable with errors.As.
type mismatch struct{ *getter.ChecksumError }

func (m mismatch) Error() string {
	return fmt.Sprintf("checksum mismatch: expected %x, got %x; the download is not the configured one (update the checksum if the release really changed)",
		m.Expected, m.Actual)
}

func (m mismatch) Unwrap() error { return m.ChecksumError }

// hints add the fix to go-getter errors that only state the problem.
var hints = map[string]string{
	"relative paths require":                     "give an absolute path, e.g. file::/srv/plugins/geo",
	"checksum cannot be specified for directory": "a checksum applies to a file or archive; pin a git source with ?ref=<tag or commit> instead",
}

// tidy puts go-getter's multi-line git output on one line, drops git's
// "Cloning into <staging>" noise and adds a hint where one is known.
type tidy struct{ error }

func (t tidy) Error() string {
	var parts []string
	for _, l := range strings.Split(t.error.Error(), "\n") {
		if i := strings.Index(l, "Cloning into "); i >= 0 {
			l = l[:i]
		}
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		parts = append(parts, l)
	}
	msg := strings.Join(parts, " ")
	for k, hint := range hints {
		if strings.Contains(msg, k) {
			msg += "; " + hint
		}
	}
	return msg
}

func (t tidy) Unwrap() error { return t.error }
