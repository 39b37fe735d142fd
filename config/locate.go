package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml v1.6 keeps key positions private (MetaData.keyInfo), and
// even there one [[array]] element overwrites the previous one's. So the
// lines errors point at come from this small scanner instead. It only ever
// sees documents toml has already accepted, so it can be lenient: on anything
// unexpected it skips to the end of the line rather than failing.

// keyLines maps a key path (see pathString) to the line it is written on.
type keyLines map[string]int

// line returns the line of path, or of its nearest ancestor that has one
// (0 when none does).
func (kl keyLines) line(path []string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := kl[pathString(path[:n])]; ok {
			return l
		}
	}
	return 0
}

// pathString renders a key path for people: segments joined by dots, array
// indexes as "[i]", segments that are not bare keys quoted.
func pathString(path []string) string {
	var b strings.Builder
	for i, seg := range path {
		if strings.HasPrefix(seg, "[") {
			b.WriteString(seg)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(seg) {
			b.WriteString(seg)
		} else {
			b.WriteString(strconv.Quote(seg))
		}
	}
	return b.String()
}

func index(i int) string { return "[" + strconv.Itoa(i) + "]" }

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareKeyByte(s[i]) {
			return false
		}
	}
	return true
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

type locator struct {
	src    string
	i      int
	line   int
	lines  keyLines
	arrays map[string]int // resolved [[table]] path -> elements seen so far
}

// locateKeys returns the line of every key, table header and array element
// of a syntactically valid TOML document.
func locateKeys(src string) keyLines {
	l := &locator{src: src, line: 1, lines: keyLines{}, arrays: map[string]int{}}
	var table []string
	for l.i < len(l.src) {
		l.skipSpace()
		if l.i >= len(l.src) {
			break
		}
		start := l.i
		switch c := l.src[l.i]; {
		case c == '\n':
			l.i++
			l.line++
			continue
		case c == '[':
			array := strings.HasPrefix(l.src[l.i:], "[[")
			if array {
				l.i += 2
			} else {
				l.i++
			}
			line := l.line
			segs := l.readKey()
			table = l.resolve(segs, array)
			l.mark(table, line)
			l.skipSpace()
			for l.i < len(l.src) && l.src[l.i] == ']' {
				l.i++
			}
		default:
			l.keyValue(table)
		}
		if l.i == start { // never loop without progress
			l.skipLine()
		}
	}
	return l.lines
}

// resolve turns a header's key into a path with array indexes: the header of
// an array table gets the next index, a table inside one belongs to its last
// element.
func (l *locator) resolve(segs []string, array bool) []string {
	var out []string
	for j, seg := range segs {
		out = append(out, seg)
		k := pathString(out)
		if j == len(segs)-1 && array {
			n := l.arrays[k]
			l.arrays[k] = n + 1
			out = append(out, index(n))
		} else if n, ok := l.arrays[k]; ok && n > 0 {
			out = append(out, index(n-1))
		}
	}
	return out
}

// mark records line for path and any ancestor not yet seen.
func (l *locator) mark(path []string, line int) {
	for n := 1; n <= len(path); n++ {
		k := pathString(path[:n])
		if _, ok := l.lines[k]; !ok {
			l.lines[k] = line
		}
	}
}

// keyValue reads "key = value" under table.
func (l *locator) keyValue(table []string) {
	line := l.line
	segs := l.readKey()
	if len(segs) == 0 {
		l.skipLine()
		return
	}
	l.skipSpace()
	if l.i >= len(l.src) || l.src[l.i] != '=' {
		l.skipLine()
		return
	}
	l.i++
	path := append(append([]string(nil), table...), segs...)
	l.mark(path, line)
	l.value(path)
}

func (l *locator) value(path []string) {
	l.skipSpace()
	if l.i >= len(l.src) {
		return
	}
	switch l.src[l.i] {
	case '"', '\'':
		l.readString()
	case '[':
		l.i++
		n := 0
		for l.i < len(l.src) {
			l.skipSpaceNL()
			if l.i >= len(l.src) {
				return
			}
			switch l.src[l.i] {
			case ']':
				l.i++
				return
			case ',':
				l.i++
				continue
			}
			start := l.i
			elem := append(append([]string(nil), path...), index(n))
			l.mark(elem, l.line)
			l.value(elem)
			n++
			if l.i == start {
				l.i++
			}
		}
	case '{':
		l.i++
		for l.i < len(l.src) {
			l.skipSpaceNL()
			if l.i >= len(l.src) {
				return
			}
			switch l.src[l.i] {
			case '}':
				l.i++
				return
			case ',':
				l.i++
				continue
			}
			start := l.i
			l.keyValue(path)
			if l.i == start {
				l.i++
			}
		}
	default:
		start := l.i
		for l.i < len(l.src) && !strings.ContainsRune(" \t\r\n,]}#", rune(l.src[l.i])) {
			l.i++
		}
		// A date-time may separate date and time with a space.
		if l.i-start == 10 && l.src[start+4] == '-' && l.i+1 < len(l.src) &&
			l.src[l.i] == ' ' && l.src[l.i+1] >= '0' && l.src[l.i+1] <= '9' {
			l.i++
			for l.i < len(l.src) && !strings.ContainsRune(" \t\r\n,]}#", rune(l.src[l.i])) {
				l.i++
			}
		}
	}
}

// readKey reads a possibly dotted key; it returns nil when there is none.
func (l *locator) readKey() []string {
	var segs []string
	for {
		l.skipSpace()
		if l.i >= len(l.src) {
			return segs
		}
		switch c := l.src[l.i]; {
		case c == '"' || c == '\'':
			segs = append(segs, l.readString())
		case isBareKeyByte(c):
			start := l.i
			for l.i < len(l.src) && isBareKeyByte(l.src[l.i]) {
				l.i++
			}
			segs = append(segs, l.src[start:l.i])
		default:
			return segs
		}
		l.skipSpace()
		if l.i >= len(l.src) || l.src[l.i] != '.' {
			return segs
		}
		l.i++
	}
}

// readString reads any of the four string forms at l.i and returns its
// content (escapes decoded for single-line basic strings, which is all a key
// can be).
func (l *locator) readString() string {
	q := l.src[l.i]
	if strings.HasPrefix(l.src[l.i:], strings.Repeat(string(q), 3)) {
		l.i += 3
		start := l.i
		for l.i < len(l.src) {
			c := l.src[l.i]
			switch {
			case c == '\\' && q == '"':
				if l.i+1 < len(l.src) && l.src[l.i+1] == '\n' {
					l.line++
				}
				l.i += 2
				continue
			case c == '\n':
				l.line++
			case c == q && strings.HasPrefix(l.src[l.i:], strings.Repeat(string(q), 3)):
				end := l.i
				l.i += 3
				// Up to two more quotes belong to the content.
				for k := 0; k < 2 && l.i < len(l.src) && l.src[l.i] == q; k++ {
					l.i++
					end++
				}
				return l.src[start:end]
			}
			l.i++
		}
		return l.src[start:]
	}
	l.i++
	start := l.i
	for l.i < len(l.src) && l.src[l.i] != q && l.src[l.i] != '\n' {
		if l.src[l.i] == '\\' && q == '"' {
			l.i++
		}
		l.i++
	}
	raw := l.src[start:min(l.i, len(l.src))]
	if l.i < len(l.src) && l.src[l.i] == q {
		l.i++
	}
	if q == '"' {
		if s, err := strconv.Unquote(`"` + raw + `"`); err == nil {
			return s
		}
	}
	return raw
}

// skipSpace skips blanks and a comment, not the newline.
func (l *locator) skipSpace() {
	for l.i < len(l.src) {
		switch l.src[l.i] {
		case ' ', '\t', '\r':
			l.i++
		case '#':
			for l.i < len(l.src) && l.src[l.i] != '\n' {
				l.i++
			}
		default:
			return
		}
	}
}

// skipSpaceNL also skips newlines (inside arrays and inline tables).
func (l *locator) skipSpaceNL() {
	for {
		l.skipSpace()
		if l.i < len(l.src) && l.src[l.i] == '\n' {
			l.i++
			l.line++
			continue
		}
		return
	}
}

func (l *locator) skipLine() {
	for l.i < len(l.src) && l.src[l.i] != '\n' {
		l.i++
	}
}
