package api

import (
	"crypto/subtle"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strings"
)

// Access says who may use the API (see "API access" in docs/DESIGN.md).
type Access struct {
	// Token is the bearer token every endpoint but the health probes
	// requires. An empty Token refuses every such request.
	Token string
	// TokenFile is where clients find the token; named in 401 answers.
	TokenFile string
	// Hosts are Host names (or addresses) accepted besides loopback ones
	// and the address the request arrived on ([supervisor] api_hosts).
	Hosts []string
}

// probes answer without a token: they say only whether the daemon is
// healthy, and orchestrators cannot send one.
var probes = map[string]bool{"/healthz": true, "/livez": true, "/readyz": true}

// Guard wraps the API's handler with its access rules, in this order:
// a CORS preflight is refused (so a browser never gets permission for a
// cross-origin request); a foreign Origin is refused; a Host that is not
// loopback, the listening address or in Hosts is refused (DNS rebinding);
// the health probes pass; everything else needs the bearer token; and a
// request body must be application/json (415), which a browser cannot send
// cross-origin without a preflight.
func Guard(h http.Handler, a Access) http.Handler {
	hosts := make(map[string]bool, len(a.Hosts))
	for _, n := range a.Hosts {
		hosts[strings.ToLower(strings.Trim(n, "[]"))] = true
	}
	want := []byte(a.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			writeError(w, http.StatusForbidden, "the plugvisor API does not allow cross-origin requests")
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, ownOrigin(r)) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("requests from origin %q are refused: the plugvisor API does not allow cross-origin requests", o))
			return
		}
		if !hostAllowed(r, hosts) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("Host %q is refused: the API answers loopback names and addresses, its own address and the names in [supervisor] api_hosts (add it there if it is yours)", r.Host))
			return
		}
		if probes[r.URL.Path] && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := bearer(r)
		if !ok || len(want) == 0 || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			what := "missing API token"
			if ok {
				what = "wrong API token"
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="plugvisor"`)
			writeError(w, http.StatusUnauthorized, fmt.Sprintf(
				"%s: send \"Authorization: Bearer <token>\" with the token the daemon keeps in %s (the plugvisor CLI reads it when run beside the daemon's config.toml or with -c; or pass --token or PLUGVISOR_TOKEN)",
				what, tokenWhere(a.TokenFile)))
			return
		}
		if msg := checkContentType(r); msg != "" {
			writeError(w, http.StatusUnsupportedMediaType, msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func tokenWhere(file string) string {
	if file == "" {
		return "<state_dir>/" + TokenFile
	}
	return file
}

// ownOrigin is the origin a page served by this API itself would have.
func ownOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// hostAllowed reports whether r's Host is a name the API answers to.
// Requests over a Unix socket pass: no browser can open one.
func hostAllowed(r *http.Request, hosts map[string]bool) bool {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if _, ok := local.(*net.UnixAddr); ok {
		return true
	}
	name := r.Host
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	name = strings.ToLower(strings.Trim(name, "[]"))
	if name == "" {
		return false
	}
	if name == "localhost" || hosts[name] {
		return true
	}
	ip := net.ParseIP(name)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	tcp, ok := local.(*net.TCPAddr)
	return ok && ip.Equal(tcp.IP)
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// checkContentType returns why r's body is refused, or "". A body must be
// declared application/json; a request without one may omit the type.
func checkContentType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			return ""
		}
		return "a request body needs \"Content-Type: application/json\" (curl: -H 'Content-Type: application/json')"
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return fmt.Sprintf("Content-Type %q is refused: request bodies are JSON, send \"Content-Type: application/json\"", ct)
	}
	return ""
}
