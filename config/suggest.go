package config

// Unknown keys, with a "did you mean" for a near one.

import (
	"fmt"
	"strings"
)

// unknown reports a key the schema does not have, suggesting a near one.
func (p *parser) unknown(path []string, known []string) {
	last := path[len(path)-1]
	msg := fmt.Sprintf("unknown key %q", pathString(path))
	if s := closest(last, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	msg += " — known keys: " + strings.Join(known, ", ")
	if len(path) == 1 {
		msg += " (tables [supervisor], [plugins.NAME], [[pipeline]])"
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: p.lines.line(path), Key: pathString(path), Msg: msg, keyInMsg: true})
}

// closest returns the known key within edit distance 2 of k, if any.
func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := EditDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance of a and b, for "did you mean"
// suggestions (config keys here, pipeline symbols in host).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
