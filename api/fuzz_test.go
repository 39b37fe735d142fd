package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIBodies sends arbitrary JSON bodies to the endpoints that take
// one, through the guard. Whatever the body, the answer is a client error
// or success, never a 5xx or a panic, always JSON, and a plugin is added
// only when the answer says so.
func FuzzAPIBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"demo","driver":"./demo","config":{"a":1}}`,
		`{"name":"x","driver":"bogus word"}`,
		`{"name":"x",`, `{"name":7}`, `{"name":"x","driver":"./x","extra":1}`,
		`{"name":"x","driver":"./x"} {}`, `null`, `[]`, `""`, `"a"`, `{"x":[1,2]}`,
		"\xff\xfe", `{"name":"\u0000","driver":"\ud800"}`, `{"config":{"a":{"b":{"c":[[[[[]]]]]}}}}`,
	} {
		for ep := range uint8(3) {
			f.Add(ep, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, ep uint8, body []byte) {
		fk := newFake()
		h := Guard(NewServer(fk, nil), Access{Token: testToken})
		path := [...]string{"/plugins", "/functions/clicks/echo", "/functions/clicks/count"}[ep%3]
		r := httptest.NewRequest("POST", path, strings.NewReader(string(body)))
		r.Host = "127.0.0.1"
		r.Header.Set("Authorization", "Bearer "+testToken)
		r.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		code := rec.Code
		if code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, code, rec.Body.Bytes())
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("POST %s %q: the answer is not JSON: %q", path, body, rec.Body.Bytes())
		}
		if code >= 400 {
			var e struct{ Error string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Fatalf("POST %s %q: %d without an error message: %s", path, body, code, rec.Body.Bytes())
			}
		}
		if path == "/plugins" && (code == http.StatusCreated) != (len(fk.Statuses()) == 2) {
			t.Fatalf("POST /plugins %q: %d but %d plugins", body, code, len(fk.Statuses()))
		}
	})
}
