package pool

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// offlineWatch records when each backend was declared offline.
type offlineWatch struct {
	mu  sync.Mutex
	at  map[string]time.Time
	err map[string]error
}

func newOfflineWatch() *offlineWatch {
	return &offlineWatch{at: map[string]time.Time{}, err: map[string]error{}}
}

func (w *offlineWatch) Observe(e Event) {
	if e.Kind != EventBackendOffline {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.at[e.Backend.Addr]; !ok {
		w.at[e.Backend.Addr] = time.Now()
		w.err[e.Backend.Addr] = e.Err
	}
}

func (w *offlineWatch) when(addr string) (time.Time, error, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.at[addr]
	return at, w.err[addr], ok
}

// backendStats returns the stats of the backend at addr.
func backendStats(t *testing.T, p *Pool[*fakeConn], addr string) BackendStats {
	t.Helper()
	for _, b := range p.Stats().Backends {
		if b.Backend.Addr == addr {
			return b
		}
	}
	t.Fatalf("no backend %s in the stats", addr)
	return BackendStats{}
}

// silencePool starts a pool of two backends, checked every 10 s, with
// the given SuspectAfter, and once they are connected silences the first
// one, whose address it returns.
func silencePool(t *testing.T, suspectAfter time.Duration) (*Pool[*fakeConn], *fakeConnector, *offlineWatch, string) {
	t.Helper()
	bs := backends(2)
	w := newOfflineWatch()
	p, fc := newTestPool(t, Policy{HealthInterval: 10 * time.Second, SuspectAfter: suspectAfter, Observer: w}, bs...)
	synctest.Wait()
	if b := backendStats(t, p, bs[0].Addr); b.Health != HealthOnline || b.Idle < 3 {
		t.Fatalf("before: %v with %d idle, want online with at least 3", b.Health, b.Idle)
	}
	fc.setMode(bs[0].Addr, backendMode{hang: true})
	return p, fc, w, bs[0].Addr
}

// A backend that stops answering is suspected as soon as one health check
// has gone SuspectAfter without an answer, and declared offline once its
// idle connections' checks have too: seconds, where the timeouts alone
// take HealthTimeout and then OfflineAfter connection attempts of
// ConnectTimeout each.
func TestSilentBackendFoundOutEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p, fc, w, silent := silencePool(t, 500*time.Millisecond)

		// The first periodic check, 10 to 11 s after the connections
		// opened, hangs; half a second later the backend is suspect.
		for !backendStats(t, p, silent).Suspect {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			if time.Since(start) > 12*time.Second {
				t.Fatal("silent backend not suspected 12 s on")
			}
		}
		suspectAt := time.Since(start)
		if b := backendStats(t, p, silent); b.Idle != 0 {
			t.Errorf("suspect backend still has %d idle connections, want them all being checked", b.Idle)
		}
		// Claims go elsewhere from now on.
		for range 10 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr == silent {
				t.Fatal("claim went to the suspect backend")
			}
			release(c)
		}
		// The rechecks of its idle connections go unanswered too: offline
		// half a second later, well before the 3 s health timeout.
		time.Sleep(time.Second)
		synctest.Wait()
		at, err, ok := w.when(silent)
		if !ok {
			t.Fatalf("silent backend not offline %v after it was suspected", time.Second)
		}
		if d := at.Sub(start) - suspectAt; d > 600*time.Millisecond {
			t.Errorf("offline %v after it was suspected, want about SuspectAfter", d)
		}
		if err != errNoAnswer {
			t.Errorf("offline event's error = %v, want %v", err, errNoAnswer)
		}
		if b := backendStats(t, p, silent); b.Health != HealthOffline || b.LastError != errNoAnswer.Error() {
			t.Errorf("silent backend: %v, last error %q; want offline, %q", b.Health, b.LastError, errNoAnswer)
		}

		// It answers again: its connections are replaced and it is back.
		fc.setMode(silent, backendMode{})
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if b := backendStats(t, p, silent); b.Health != HealthOnline || b.Suspect || b.Idle == 0 {
			t.Errorf("after the silence: %v, suspect %v, %d idle; want online, not suspect, idle connections", b.Health, b.Suspect, b.Idle)
		}
	})
}

// With SuspectAfter turned off, only the timeouts count.
func TestSuspectAfterOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _, w, silent := silencePool(t, -1)
		time.Sleep(12900 * time.Millisecond) // the first checks, due 10 to 11 s on, hang short of the 3 s timeout
		synctest.Wait()
		if b := backendStats(t, p, silent); b.Suspect || b.Health != HealthOnline {
			t.Errorf("checks pending under HealthTimeout: %v, suspect %v; want online, not suspect", b.Health, b.Suspect)
		}
		if _, _, ok := w.when(silent); ok {
			t.Error("backend declared offline with SuspectAfter off")
		}
	})
}

// A slow but live backend is never suspected or declared offline for its
// slowness: connections that take 15 ms (or 400 ms, under the default
// SuspectAfter), checked and replaced often, while claims keep every slot
// busy.
func TestSlowBackendNeverSuspected(t *testing.T) {
	for _, delay := range []time.Duration{15 * time.Millisecond, 400 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bs := backends(2)
				w := newOfflineWatch()
				r, _ := resolver.NewStatic(bs...)
				fc := newFakeConnector()
				for _, b := range bs {
					fc.setMode(b.Addr, backendMode{delay: delay})
				}
				p, err := New(r, fc, Policy{
					MaxSlots:       8,
					HealthInterval: time.Second,
					MaxLifetime:    3 * time.Second,
					Observer:       w,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for range 12 { // more workers than slots: the pool is busy
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							c, err := p.Claim(t.Context())
							if err != nil {
								t.Error(err)
								return
							}
							time.Sleep(300 * time.Millisecond)
							release(c)
						}
					})
				}
				for range 600 { // a minute
					time.Sleep(100 * time.Millisecond)
					for _, b := range p.Stats().Backends {
						if b.Suspect || b.Health == HealthOffline {
							t.Fatalf("slow backend %s: %v, suspect %v", b.Backend.Addr, b.Health, b.Suspect)
						}
					}
				}
				close(stop)
				wg.Wait()
				for _, b := range bs {
					if _, _, ok := w.when(b.Addr); ok {
						t.Errorf("slow backend %s declared offline", b.Addr)
					}
				}
				if n := fc.connects.Load(); n < 20 {
					t.Errorf("%d connection attempts in a minute, want many (lifetime 3 s)", n)
				}
			})
		})
	}
}
