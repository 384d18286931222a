// Package statshttp serves a qorb pool's stats over HTTP, as a JSON
// snapshot and as a small web page that shows it live. "qorb top URL"
// shows the same JSON live in a terminal. It is a package of its own, as
// net/http/pprof is, so that a program that opens the driver does not
// link net/http unless it mounts the handler.
//
// Mount [Handler] where you like, behind your own access control: it
// shows backend addresses and errors, never a user or a password.
//
//	db, err := sql.Open("qorb", dsn)
//	c, err := qorb.ConnectorOf(db)
//	http.Handle("/debug/qorb", statshttp.Handler(c))
//
// A request with ?format=json, or whose Accept header names
// application/json, gets one JSON [Snapshot] of the pool's stats; any
// other GET gets a self-contained HTML page that fetches the JSON every
// second and shows it, with charts of each backend's claims/s, mean wait
// and failures over the last minutes it has seen. The JSON's fields are those of [Snapshot],
// [Backend] and [Slots], named by their json tags; a client such as qorb
// top decodes it into a [Snapshot].
package statshttp

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/qorb-go/qorb/pool"
)

// Pool is what [Handler] reads: a *qorb.Connector or a *pool.Pool.
type Pool interface {
	Stats() pool.Stats
}

// Handler returns an http.Handler that serves p's stats: a JSON
// [Snapshot] to a request with ?format=json or an Accept header naming
// application/json, and the HTML page to any other. It answers GET and
// HEAD, and 405 to anything else; its answers are not cached.
func Handler(p Pool) http.Handler {
	return handler{p}
}

type handler struct{ p Pool }

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Vary", "Accept")
	if !wantsJSON(r) {
		hd.Set("Content-Type", "text/html; charset=utf-8")
		hd.Set("Content-Security-Policy", pageCSP)
		if r.Method == http.MethodGet {
			w.Write(page)
		}
		return
	}
	body, err := json.Marshal(NewSnapshot(h.p.Stats(), time.Now()))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	hd.Set("Content-Type", "application/json")
	if r.Method == http.MethodGet {
		w.Write(append(body, '\n'))
	}
}

// wantsJSON reports whether r asks for JSON: ?format=json, or an Accept
// header naming application/json.
func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	for _, a := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(a, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}

// page is the HTML page, with its style and script inline.
//
//go:embed page.html
var page []byte

// pageCSP lets the page run its own script and style and fetch from its
// own origin, and nothing else.
var pageCSP = "default-src 'none'; connect-src 'self'; script-src '" + cspHash(inline(page, "script")) +
	"'; style-src '" + cspHash(inline(page, "style")) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inline returns the text of the first <tag> element in page, as a
// browser hashes it for the Content-Security-Policy, or nil if there is
// none.
func inline(page []byte, tag string) []byte {
	_, after, ok := bytes.Cut(page, []byte("<"+tag+">"))
	if !ok {
		return nil
	}
	text, _, ok := bytes.Cut(after, []byte("</"+tag+">"))
	if !ok {
		return nil
	}
	return text
}

// cspHash is the Content-Security-Policy source that allows the inline
// text b.
func cspHash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}
