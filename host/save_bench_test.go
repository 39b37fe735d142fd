package host

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// BenchmarkSaveToServing measures, at default settings, the time from an
// editor's save of a Go plugin to the new code serving (swap finished and
// answering), for in-place, vim-style and JetBrains-style saves, against a
// plain warm `go build` of the same package after the same kind of edit,
// run in the same iterations. "before" is the previous behaviour (build
// after the quiet period; go list on the path), "now" starts the build at
// the first change. Metrics: serving-ms, gobuild-ms and their difference
// overhead-ms, per save.
//
//	go test -run '^$' -bench SaveToServing -benchtime 5x ./host/
func BenchmarkSaveToServing(b *testing.B) {
	saves := []struct {
		name string
		save func(testing.TB, string, string)
	}{{"in-place", saveInPlace}, {"vim", saveVim}, {"jetbrains", saveJetBrains}}
	for _, mode := range []struct {
		name string
		on   bool
	}{{"before", false}, {"now", true}} {
		for _, s := range saves {
			b.Run(mode.name+"/"+s.name, func(b *testing.B) {
				speculative = mode.on
				defer func() { speculative = true }()
				dir := b.TempDir()
				plug, plain := filepath.Join(dir, "plug"), filepath.Join(dir, "plain")
				writeModule(b, plug, "v0")
				writeModule(b, plain, "v0")
				goBuild(b, plain, filepath.Join(dir, "plain.bin")) // warm
				// Default settings: no debounce override.
				hs := startHost(b, dir, "[supervisor]\nstate_dir = \"st\"\n\n[plugins.plug]\ndriver = \"./plug\"\n"+buildEnv, Options{})
				versionFile := filepath.Join(plug, "version.go")
				var serving, build time.Duration
				b.ResetTimer()
				for i := range b.N {
					v := fmt.Sprintf("%s-%d", s.name, i+1)
					m := hs.rec.mark()
					saved := time.Now()
					s.save(b, versionFile, versionGo(v))
					sw, _ := hs.rec.waitFor(b, m, supervisor.EventSwapFinished, "plug")
					serving += sw.At.Sub(saved)
					b.StopTimer()
					if got := hs.call("plug", "version"); got != strconv.Quote(v) {
						b.Fatalf("after the %s save the plugin serves %s, want %q", s.name, got, v)
					}
					writeFile(b, filepath.Join(plain, "version.go"), versionGo(v))
					build += goBuild(b, plain, filepath.Join(dir, "plain.bin"))
					b.StartTimer()
				}
				b.StopTimer()
				n := float64(b.N)
				b.ReportMetric(ms(serving)/n, "serving-ms")
				b.ReportMetric(ms(build)/n, "gobuild-ms")
				b.ReportMetric((ms(serving)-ms(build))/n, "overhead-ms")
				hs.stop()
			})
		}
	}
}
