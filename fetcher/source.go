package fetcher

// The source address: checked before go-getter sees it, and redacted
// before an error shows it.

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// prepareSource refuses option-like refs (go-getter hands ?ref= to
// `git checkout` without "--") and adds Options.Checksum as go-getter's
// checksum query.
func prepareSource(src, checksum string) (string, error) {
	if strings.TrimSpace(src) == "" {
		return "", errors.New("empty source: give a go-getter address such as git::https://host/repo.git?ref=v1")
	}
	rest := src
	if m := forcedPrefix.FindStringSubmatch(src); m != nil {
		rest = m[2]
	}
	var q url.Values
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		var err error
		if q, err = url.ParseQuery(rest[i+1:]); err != nil {
			return "", fmt.Errorf("invalid query in source: %w", err)
		}
	}
	if ref := q.Get("ref"); strings.HasPrefix(ref, "-") {
		return "", fmt.Errorf("invalid ref %q: a ref must not start with '-'", ref)
	}
	if checksum == "" {
		return src, nil
	}
	if q.Has("checksum") {
		return "", errors.New("checksum given both in the source (?checksum=) and in the plugin options; keep one")
	}
	sep := "?"
	if strings.Contains(rest, "?") {
		sep = "&"
	}
	return src + sep + "checksum=" + url.QueryEscape(checksum), nil
}

// redact hides a URL password and an inline ssh key so errors can be shown.
func redact(src string) string {
	prefix, rest := "", src
	if m := forcedPrefix.FindStringSubmatch(src); m != nil {
		prefix, rest = m[1]+"::", m[2]
	}
	u, err := url.Parse(rest)
	if err != nil {
		return src
	}
	changed := false
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
		changed = true
	}
	if q := u.Query(); q.Has("sshkey") {
		q.Set("sshkey", "redacted")
		u.RawQuery = q.Encode()
		changed = true
	}
	if !changed {
		return src
	}
	return prefix + u.String()
}
