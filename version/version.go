// Package version says which plugvisor this is: the module version, the
// VCS revision, the Go version and the wire protocol version. The daemon
// shows it in `plugvisor version`, /healthz, /livez and the
// plugvisor_build_info metric.
package version

import (
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugvisor/plugvisor/transport"
)

// Stamped by release builds (make dist) with
// -ldflags "-X github.com/plugvisor/plugvisor/version.Version=v1.2.3
// -X github.com/plugvisor/plugvisor/version.Revision=<git sha>".
// Empty values fall back to what the Go toolchain recorded in the binary.
var (
	Version  string
	Revision string
)

// Info identifies a build.
type Info struct {
	Version   string `json:"version"`  // module version, "(devel)" for a build from a checkout
	Revision  string `json:"revision"` // VCS commit, "" when unknown
	Modified  bool   `json:"modified"` // the tree had uncommitted changes
	GoVersion string `json:"go_version"`
	Protocol  int    `json:"protocol"` // wire protocol version (transport.Version)
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// Get returns this binary's Info.
func Get() Info {
	i := Info{Version: Version, Revision: Revision, GoVersion: runtime.Version(),
		Protocol: transport.Version, Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Revision == "" {
					i.Revision = s.Value
				}
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	return i
}

// Collector is the plugvisor_build_info gauge: always 1, the build's
// identity in its labels (the Prometheus convention for build info).
func Collector() prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "plugvisor_build_info",
		Help: "Always 1; the labels say which plugvisor build runs.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision,
			"goversion": i.GoVersion, "protocol": strconv.Itoa(i.Protocol)},
	})
	g.Set(1)
	return g
}
