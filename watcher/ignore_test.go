package watcher

import "testing"

func TestIgnoreRules(t *testing.T) {
	r := parseGitignore("# comment\n*.log\n!keep.log\nbuild/\n/secret.txt\ngen/**/*.pb.go\ndocs/*.md\ntrailing   \n\\#hash\n")
	tests := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{"main.go", false, false},
		{"sub/main.go", false, false},
		// editor noise
		{".main.go.swp", false, true},
		{"sub/.main.go.swo", false, true},
		{".main.go.swn", false, true},
		{".main.go.swx", false, true},
		{".main.go.swpx", false, true},
		{"4913", false, true},
		{"sub/5036", false, true},
		{"4913", true, false},
		{"2024/main.go", false, false},
		{"main.go~", false, true},
		{".#main.go", false, true},
		{"#main.go#", false, true},
		{"#", false, false},
		{"main.go___jb_tmp___", false, true},
		{"main.go___jb_old___", false, true},
		{".DS_Store", false, true},
		{"swap.go", false, false},
		{"movie.swf", false, false},
		{"f.go.swp", false, true},
		// folders
		{".git", true, true},
		{".git/HEAD", false, true},
		{"bin/app", false, true},
		{"sub/bin/app", false, true},
		{"binary.go", false, false},
		{"remote-plugins/x/main.go", false, true},
		{".plugvisor/state", false, true},
		{"web/node_modules/x.js", false, true},
		{"py/__pycache__/m.pyc", false, true},
		// .gitignore
		{"app.log", false, true},
		{"sub/app.log", false, true},
		{"keep.log", false, true}, // negation not supported
		{"build", true, true},
		{"build", false, false},
		{"build/x/out.go", false, true},
		{"sub/build/out.go", false, true},
		{"secret.txt", false, true},
		{"sub/secret.txt", false, false},
		{"gen/api.pb.go", false, true},
		{"gen/a/b/api.pb.go", false, true},
		{"gen/a/b/api.go", false, false},
		{"other/gen/api.pb.go", false, false},
		{"docs/a.md", false, true},
		{"docs/sub/a.md", false, false},
		{"trailing", false, true},
		{"#hash", false, true},
		{"", true, false},
	}
	for _, tt := range tests {
		if got := r.ignored(tt.rel, tt.isDir); got != tt.want {
			t.Errorf("ignored(%q, dir=%v) = %v, want %v", tt.rel, tt.isDir, got, tt.want)
		}
	}
}
