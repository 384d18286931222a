package pool

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestBackendsChangedAt shows that Stats.BackendsChangedAt moves when the
// pool applies a backend set that adds or removes a backend, and only then.
func TestBackendsChangedAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeResolver()
		p, err := New(fr, newFakeConnector(), Policy{RebalanceDelay: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		synctest.Wait()
		if got := p.Stats().BackendsChangedAt; !got.IsZero() {
			t.Errorf("BackendsChangedAt before any set = %v, want zero", got)
		}
		bs := backends(3)
		first := time.Now()
		fr.set(bs...) // the first set applies at once
		synctest.Wait()
		if got := p.Stats().BackendsChangedAt; !got.Equal(first) {
			t.Errorf("BackendsChangedAt after the first set = %v, want %v", got, first)
		}

		time.Sleep(5 * time.Second)
		fr.set(bs...) // the same set again: no change
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := p.Stats().BackendsChangedAt; !got.Equal(first) {
			t.Errorf("BackendsChangedAt after the same set = %v, want %v still", got, first)
		}

		fr.set(bs[1:]...)
		removed := time.Now().Add(time.Second) // applied after the rebalance delay
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := p.Stats().BackendsChangedAt; !got.Equal(removed) {
			t.Errorf("BackendsChangedAt after a removal = %v, want %v", got, removed)
		}
	})
}
