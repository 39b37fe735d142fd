package watcher

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
)

// ignoredDirs are folders never watched at any depth: VCS data, build output
// (watching bin/ would make every build trigger the next one), fetched
// drivers, plugvisor's own state and dependency caches.
var ignoredDirs = map[string]bool{
	".git":           true,
	"bin":            true,
	"remote-plugins": true,
	".plugvisor":     true,
	"node_modules":   true,
	"__pycache__":    true,
}

// isNoise reports editor scratch files: saving through them must surface as
// a change of the real file only.
func isNoise(name string, isDir bool) bool {
	switch {
	case name == ".DS_Store":
		return true
	case strings.HasSuffix(name, "~"): // vim/emacs backups
		return true
	case strings.HasPrefix(name, ".#"): // emacs lock symlink
		return true
	case len(name) > 1 && name[0] == '#' && name[len(name)-1] == '#': // emacs auto-save
		return true
	case strings.HasSuffix(name, "___jb_tmp___"), strings.HasSuffix(name, "___jb_old___"):
		return true
	case isVimSwap(name):
		return true
	case !isDir && allDigits(name): // vim's writability probe: 4913, 5036, …
		return true
	}
	return false
}

// isVimSwap matches vim swap files: .swp, then .swo, .swn … .swa while
// older ones exist, and the .swx/.swpx probes. The .swa–.swn range only
// counts for dot names (vim's ".name.swn"), so "movie.swf" is kept.
func isVimSwap(name string) bool {
	switch ext := path.Ext(name); {
	case ext == ".swp", ext == ".swo", ext == ".swx", ext == ".swpx":
		return true
	case len(ext) == 4 && strings.HasPrefix(ext, ".sw") && ext[3] >= 'a' && ext[3] <= 'p':
		return name[0] == '.'
	}
	return false
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pattern is one .gitignore line.
type pattern struct {
	segs     []string // glob per path segment; "**" spans any number of them
	dirOnly  bool     // trailing "/": matches folders only
	anchored bool     // contained a "/": matched from the root, not at any depth
}

// rules is the root's .gitignore plus the built-in rules.
type rules struct {
	patterns []pattern
}

// loadRules reads root/.gitignore; a missing file means no extra rules.
func loadRules(file string) (*rules, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return &rules{}, nil
	}
	if err != nil {
		return &rules{}, err
	}
	return parseGitignore(string(data)), nil
}

// parseGitignore supports the common subset of gitignore(5): names, globs,
// "dir/", "/anchored", "a/**/b" and "#" comments. "!negation" lines are
// skipped: a path they would re-include stays ignored, which at worst hides
// a change the user asked git (not us) to track.
func parseGitignore(text string) *rules {
	r := &rules{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if !strings.HasSuffix(line, `\ `) {
			line = strings.TrimRight(line, " \t")
		}
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		if strings.HasPrefix(line, `\#`) || strings.HasPrefix(line, `\!`) {
			line = line[1:]
		}
		var p pattern
		if strings.HasSuffix(line, "/") {
			p.dirOnly = true
			line = strings.TrimRight(line, "/")
		}
		p.anchored = strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		if line == "" {
			continue
		}
		p.segs = strings.Split(line, "/")
		r.patterns = append(r.patterns, p)
	}
	return r
}

// ignored reports whether rel (slash-separated, relative to the root) is
// ignored; isDir tells whether rel itself is a folder. A path inside an
// ignored folder is ignored.
func (r *rules) ignored(rel string, isDir bool) bool {
	if rel == "" || rel == "." {
		return false
	}
	parts := strings.Split(rel, "/")
	if isNoise(parts[len(parts)-1], isDir) {
		return true
	}
	for i, part := range parts {
		// The last element is checked against folder names even when we
		// cannot tell it is a folder (it was removed): a file named like
		// one of them is not worth a rebuild.
		if ignoredDirs[part] {
			return true
		}
		dir := i < len(parts)-1 || isDir
		for _, p := range r.patterns {
			if p.dirOnly && !dir {
				continue
			}
			if p.anchored {
				if matchSegs(p.segs, parts[:i+1]) {
					return true
				}
			} else if ok, _ := path.Match(p.segs[0], part); ok {
				return true
			}
		}
	}
	return false
}

// matchSegs matches glob segments against path segments; "**" matches zero
// or more whole segments.
func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
