package qorb

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/qorb-go/qorb/pool"
)

// StatsHandler returns an http.Handler that serves c's stats, for the
// application to mount where it likes:
//
//	http.Handle("/debug/qorb", qorb.StatsHandler(c))
//
// A request with ?format=json, or whose Accept header names
// application/json, gets a JSON snapshot of [Connector.Stats]; any other
// GET gets a small self-contained HTML page that shows the same snapshot
// and refreshes itself from the JSON every second. "qorb top URL" shows
// the JSON live in a terminal.
//
// The JSON object has these fields; durations are in seconds, times are
// RFC 3339 in UTC (null when they never happened), and counters are
// cumulative since the connector started, so a client computes rates from
// two snapshots:
//
//	time                 when the snapshot was taken
//	max_slots            the cap on connections (pool_max_conns)
//	waiting              claims queued now
//	timeouts             claims that timed out or whose context ended while queued
//	failures             claims that failed, for any reason
//	resolver_error       the resolver's last error, "" if none
//	backends_changed_at  when the resolver last added or removed a backend
//	backends             one object per backend, by priority then address:
//	  host, addr           the name TLS verifies, and the address dialled
//	  priority, weight     from SRV, or 0 and 1 for a static list
//	  role                 "primary", "replica" or "unknown"
//	  health               "unknown", "online", "offline" or "removed"
//	  suspect              a connection to it failed recently
//	  wanted               slots the last rebalance gave it
//	  slots                {connecting, idle, checking, claimed, recycling, backing_off}
//	  claims               claims it served
//	  waits, wait_seconds  those of them that waited, and for how long in all
//	  failures             failed connects, health checks and recycles
//	  oldest_claim_seconds how long its longest-held connection has been out
//	  last_error           its last failure, "" if none
//	  last_error_at        when that happened
//
// Backends are named by host and address only: a DSN's user and password
// never appear. The handler answers GET and HEAD, and 405 to anything
// else; its answers are not cached.
func StatsHandler(c *Connector) http.Handler {
	return statsHandler{c}
}

type statsHandler struct{ c *Connector }

func (h statsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		hd.Set("Content-Security-Policy", statsPageCSP)
		if r.Method == http.MethodGet {
			w.Write([]byte(statsPage))
		}
		return
	}
	body, err := json.Marshal(statsJSONOf(h.c.Stats(), time.Now()))
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

// statsJSON is the JSON form of pool.Stats that StatsHandler documents.
type statsJSON struct {
	Time              time.Time     `json:"time"`
	MaxSlots          int           `json:"max_slots"`
	Waiting           int           `json:"waiting"`
	Timeouts          uint64        `json:"timeouts"`
	Failures          uint64        `json:"failures"`
	ResolverError     string        `json:"resolver_error"`
	BackendsChangedAt *time.Time    `json:"backends_changed_at"`
	Backends          []backendJSON `json:"backends"`
}

type backendJSON struct {
	Host               string     `json:"host"`
	Addr               string     `json:"addr"`
	Priority           uint16     `json:"priority"`
	Weight             uint16     `json:"weight"`
	Role               string     `json:"role"`
	Health             string     `json:"health"`
	Suspect            bool       `json:"suspect"`
	Wanted             int        `json:"wanted"`
	Slots              slotsJSON  `json:"slots"`
	Claims             uint64     `json:"claims"`
	Waits              uint64     `json:"waits"`
	WaitSeconds        float64    `json:"wait_seconds"`
	Failures           uint64     `json:"failures"`
	OldestClaimSeconds float64    `json:"oldest_claim_seconds"`
	LastError          string     `json:"last_error"`
	LastErrorAt        *time.Time `json:"last_error_at"`
}

type slotsJSON struct {
	Connecting int `json:"connecting"`
	Idle       int `json:"idle"`
	Checking   int `json:"checking"`
	Claimed    int `json:"claimed"`
	Recycling  int `json:"recycling"`
	BackingOff int `json:"backing_off"`
}

func statsJSONOf(st pool.Stats, now time.Time) statsJSON {
	out := statsJSON{
		Time:              now.UTC(),
		MaxSlots:          st.MaxSlots,
		Waiting:           st.Waiting,
		Timeouts:          st.Timeouts,
		Failures:          st.Failures,
		ResolverError:     st.ResolverError,
		BackendsChangedAt: timeOrNull(st.BackendsChangedAt),
		Backends:          make([]backendJSON, 0, len(st.Backends)),
	}
	for _, b := range st.Backends {
		out.Backends = append(out.Backends, backendJSON{
			Host:     b.Backend.Host,
			Addr:     b.Backend.Addr,
			Priority: b.Backend.Priority,
			Weight:   b.Backend.Weight,
			Role:     b.Backend.Role.String(),
			Health:   b.Health.String(),
			Suspect:  b.Suspect,
			Wanted:   b.Wanted,
			Slots: slotsJSON{
				Connecting: b.Connecting,
				Idle:       b.Idle,
				Checking:   b.Checking,
				Claimed:    b.Claimed,
				Recycling:  b.Recycling,
				BackingOff: b.BackingOff,
			},
			Claims:             b.Claims,
			Waits:              b.Waits,
			WaitSeconds:        b.WaitTime.Seconds(),
			Failures:           b.Failures,
			OldestClaimSeconds: b.OldestClaim.Seconds(),
			LastError:          b.LastError,
			LastErrorAt:        timeOrNull(b.LastErrorAt),
		})
	}
	return out
}

// timeOrNull returns t in UTC without its monotonic reading, or nil for
// the zero time.
func timeOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC().Round(0)
	return &t
}

// statsPageCSP lets the page run its own script and style and fetch from
// its own origin, and nothing else.
var statsPageCSP = "default-src 'none'; connect-src 'self'; script-src '" + cspHash(statsScript) +
	"'; style-src '" + cspHash(statsStyle) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

const statsStyle = `
body{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin:1.5em;color:#222;background:#fff}
h1{font-size:16px;margin:0 0 .3em}
#pool{margin:.3em 0 1em}
#pool span{margin-right:1.5em}
table{border-collapse:collapse}
th,td{padding:.2em .7em;text-align:right;border-bottom:1px solid #ddd;white-space:nowrap}
th{background:#f4f4f4;font-weight:600}
th.l,td.l{text-align:left}
td.err{color:#b00;max-width:40em;overflow:hidden;text-overflow:ellipsis}
tr.offline td,tr.removed td{color:#999}
td.online{color:#070}td.offline{color:#b00}td.unknown{color:#a60}#resolver{color:#b00}
#status.stale{color:#b00}
@media (prefers-color-scheme:dark){body{color:#ddd;background:#111}th{background:#222}th,td{border-color:#333}}
`

const statsScript = `
"use strict";
const url = location.pathname + "?format=json";
let prev = null;
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function dur(s) {
  if (s === 0) return "0";
  if (s < 1e-3) return (s * 1e6).toFixed(0) + "µs";
  if (s < 1) return (s * 1e3).toFixed(1) + "ms";
  if (s < 120) return s.toFixed(1) + "s";
  return (s / 60).toFixed(1) + "m";
}
function ago(t, now) {
  if (!t) return "never";
  return dur(Math.max(0, (Date.parse(now) - Date.parse(t)) / 1000)) + " ago";
}
function render(st) {
  const pool = document.getElementById("pool");
  pool.replaceChildren();
  let slots = 0, claimed = 0;
  for (const b of st.backends) {
    const s = b.slots;
    slots += s.connecting + s.idle + s.checking + s.claimed + s.recycling + s.backing_off;
    claimed += s.claimed;
  }
  const dt = prev ? (Date.parse(st.time) - Date.parse(prev.time)) / 1000 : 0;
  const before = new Map((prev ? prev.backends : []).map(b => [b.host + "@" + b.addr, b]));
  let rate = 0;
  const rows = st.backends.map(b => {
    const p = before.get(b.host + "@" + b.addr);
    const r = p && dt > 0 ? Math.max(0, b.claims - p.claims) / dt : null;
    if (r !== null) rate += r;
    return [b, r];
  });
  for (const [k, v] of [["slots", slots + "/" + st.max_slots], ["claimed", claimed],
      ["claims/s", prev ? rate.toFixed(1) : "–"], ["waiting", st.waiting], ["timeouts", st.timeouts],
      ["failed claims", st.failures], ["backends changed", ago(st.backends_changed_at, st.time)]]) {
    const s = el("span");
    s.append(el("b", k + " "), el("span", String(v)));
    s.lastChild.dataset.k = k;
    pool.append(s);
  }
  const rerr = document.getElementById("resolver");
  rerr.textContent = st.resolver_error ? "resolver: " + st.resolver_error : "";
  const tb = document.getElementById("rows");
  tb.replaceChildren();
  for (const [b, r] of rows) {
    const tr = el("tr", undefined, b.health);
    tr.dataset.addr = b.addr;
    const name = b.host && b.host !== b.addr && !b.addr.startsWith(b.host + ":") ? b.host + " " + b.addr : b.addr;
    const s = b.slots;
    tr.append(el("td", name, "l"), el("td", b.role, "l"),
      el("td", b.health + (b.suspect ? "?" : ""), "l " + b.health),
      el("td", String(s.connecting)), el("td", String(s.idle)), el("td", String(s.checking)),
      el("td", String(s.claimed)), el("td", String(s.recycling)), el("td", String(s.backing_off)),
      el("td", String(b.claims)), el("td", r === null ? "–" : r.toFixed(1)),
      el("td", b.claims ? dur(b.wait_seconds / b.claims) : "–"),
      el("td", dur(b.oldest_claim_seconds)), el("td", String(b.failures)));
    const e = el("td", b.last_error ? b.last_error + " (" + ago(b.last_error_at, st.time) + ")" : "", "l err");
    e.title = b.last_error;
    tr.append(e);
    tb.append(tr);
  }
  prev = st;
}
async function tick() {
  const status = document.getElementById("status");
  try {
    const resp = await fetch(url, {cache: "no-store", headers: {Accept: "application/json"}});
    if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
    const st = await resp.json();
    render(st);
    status.textContent = "updated " + new Date(st.time).toLocaleTimeString();
    status.className = "";
    document.body.dataset.updated = st.time;
  } catch (e) {
    status.textContent = "cannot fetch stats: " + e.message;
    status.className = "stale";
  }
  setTimeout(tick, 1000);
}
tick();
`

const statsPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qorb pool</title>
<style>` + statsStyle + `</style>
</head>
<body>
<h1>qorb pool <small id="status">loading…</small></h1>
<div id="pool"></div>
<div id="resolver"></div>
<table>
<thead>
<tr><th class="l">backend</th><th class="l">role</th><th class="l">health</th>
<th>conn</th><th>idle</th><th>check</th><th>claimed</th><th>recycle</th><th>backoff</th>
<th>claims</th><th>claims/s</th><th>avg wait</th><th>oldest claim</th><th>failures</th><th class="l">last error</th></tr>
</thead>
<tbody id="rows"></tbody>
</table>
<script>` + statsScript + `</script>
</body>
</html>
`
