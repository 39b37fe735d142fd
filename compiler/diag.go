package compiler

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// posLine matches "file:line:col: msg" and "file:line: msg"; the file part
// has no colon and does not start with a space, so "go: …" and
// "main.main: relocation …" do not match.
var posLine = regexp.MustCompile(`^([^\s:][^:]*):(\d+)(?::(\d+))?:\s?(.*)$`)

// ParseDiagnostics turns go build output into diagnostics. Paths are made
// absolute against dir (the folder go build ran in). Package headers
// ("# example.com/x") are skipped; indented lines continue the previous
// message (e.g. "have (int)" / "want ()"); any other line (`go: …` module
// errors, linker errors) becomes a diagnostic without a file.
func ParseDiagnostics(output, dir string) []Diagnostic {
	var ds []Diagnostic
	for line := range strings.SplitSeq(output, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "# "):
			continue
		case (line[0] == '\t' || line[0] == ' ') && len(ds) > 0:
			ds[len(ds)-1].Msg += "\n" + strings.TrimSpace(line)
			continue
		}
		if m := posLine.FindStringSubmatch(line); m != nil {
			file := m[1]
			if !filepath.IsAbs(file) {
				file = filepath.Join(dir, file)
			}
			ln, _ := strconv.Atoi(m[2])
			col, _ := strconv.Atoi(m[3]) // "" → 0
			ds = append(ds, Diagnostic{File: filepath.Clean(file), Line: ln, Col: col, Msg: m[4]})
			continue
		}
		ds = append(ds, Diagnostic{Msg: strings.TrimSpace(line)})
	}
	return ds
}
