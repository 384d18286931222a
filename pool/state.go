package pool

import "strconv"

// State is the state of one slot.
//
//	     ┌──────────── connect failed ─────────────┐
//	     ▼                                         │
//	BackingOff ──retry due──▶ Connecting ──ok──▶ Idle ◀──ok── Checking
//	                                             │  ▲            ▲
//	                                       claim │  │ recycled   │ health check due,
//	                                             ▼  │            │ or backend suspected
//	                                          Claimed ──▶ Recycling
//
// Any state ends in Closed when the slot is no longer wanted (its backend
// was removed, the pool shrank or closed). A failed health check or
// recycle, a discarded connection and the end of a connection's lifetime
// send the slot back to BackingOff, due at once; its next connection
// attempt closes the old connection first.
//
// The transitions are the …Locked methods of slot.go, one per arrow or
// group of arrows; closeSlotLocked is the way into Closed.
type State uint8

// The slot states.
const (
	// StateConnecting: a connection is being opened in the background.
	StateConnecting State = iota
	// StateIdle: connected and ready to be claimed.
	StateIdle
	// StateChecking: connected, and a health check is running.
	StateChecking
	// StateClaimed: handed out to a caller.
	StateClaimed
	// StateRecycling: returned by a caller, being cleaned in the background.
	StateRecycling
	// StateBackingOff: waiting before the next connection attempt.
	StateBackingOff
	// StateClosed: gone for good.
	StateClosed
)

var stateNames = [...]string{
	StateConnecting: "connecting",
	StateIdle:       "idle",
	StateChecking:   "checking",
	StateClaimed:    "claimed",
	StateRecycling:  "recycling",
	StateBackingOff: "backing-off",
	StateClosed:     "closed",
}

// String returns the state's name, such as "idle" or "backing-off".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Health is what the pool thinks of a backend.
type Health uint8

// The backend health values.
const (
	// HealthUnknown: no connection attempt has finished yet.
	HealthUnknown Health = iota
	// HealthOnline: the backend accepts connections.
	HealthOnline
	// HealthOffline: repeated connection attempts failed and no connection
	// to it is open. The pool keeps one slot probing it and claims do not
	// wait for it.
	HealthOffline
	// HealthRemoved: the resolver no longer lists it. It takes no new
	// claims and goes away when its last claimed connection comes back.
	HealthRemoved
)

var healthNames = [...]string{
	HealthUnknown: "unknown",
	HealthOnline:  "online",
	HealthOffline: "offline",
	HealthRemoved: "removed",
}

// String returns "unknown", "online", "offline" or "removed".
func (h Health) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return "health(" + strconv.Itoa(int(h)) + ")"
}
