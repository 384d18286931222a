package pool

import (
	"slices"
	"testing"
)

func TestPlan(t *testing.T) {
	online := func(prio uint16, weight uint64) setInfo {
		return setInfo{health: HealthOnline, prio: prio, weight: weight}
	}
	withSlots := func(in setInfo, existing, live, claimed int) setInfo {
		in.existing, in.live, in.claimed, in.recent = existing, live, claimed, claimed
		return in
	}
	tests := []struct {
		name             string
		infos            []setInfo
		pol              Policy
		waiting, closing int
		periodic         bool
		wantWanted       []int
		wantTotal        int
		wantRoom         int
		wantShrink       bool
	}{
		{
			name:       "spares spread evenly over equal weights",
			infos:      []setInfo{online(0, 1), online(0, 1), online(0, 1)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 8},
			wantWanted: []int{3, 3, 2}, wantTotal: 8, wantRoom: 16,
		},
		{
			name:       "spares spread in proportion to weight",
			infos:      []setInfo{online(0, 1), online(0, 3)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 8},
			wantWanted: []int{2, 6}, wantTotal: 8, wantRoom: 16,
		},
		{
			name:       "claims and waiters add to demand, capped by MaxSlots",
			infos:      []setInfo{withSlots(online(0, 1), 6, 6, 5), withSlots(online(0, 1), 6, 6, 5)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 8},
			waiting:    4,
			wantWanted: []int{8, 8}, wantTotal: 16, wantRoom: 4,
		},
		{
			name:       "connections still closing take room: shrink to make it",
			infos:      []setInfo{withSlots(online(0, 1), 6, 6, 5), withSlots(online(0, 1), 6, 6, 5)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 8},
			waiting:    4,
			closing:    1,
			wantWanted: []int{8, 8}, wantTotal: 16, wantRoom: 3, wantShrink: true,
		},
		{
			name: "offline probes with one slot, removed and higher tiers get none",
			infos: []setInfo{
				online(0, 1),
				{health: HealthOffline, prio: 0, weight: 1},
				{health: HealthRemoved, prio: 0, weight: 1, existing: 2},
				online(1, 1),
			},
			pol:        Policy{MaxSlots: 10, MaxPerBackend: 16, Spares: 4},
			wantWanted: []int{4, 1, 0, 0}, wantTotal: 5, wantRoom: 8,
		},
		{
			name:       "every healthy backend gets a slot without demand",
			infos:      []setInfo{online(0, 1), online(0, 1), online(0, 1)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16},
			wantWanted: []int{1, 1, 1}, wantTotal: 3, wantRoom: 16,
		},
		{
			name:       "but never beyond MaxSlots",
			infos:      []setInfo{online(0, 1), online(0, 1), online(0, 1)},
			pol:        Policy{MaxSlots: 2, MaxPerBackend: 16},
			wantWanted: []int{1, 1, 0}, wantTotal: 2, wantRoom: 2,
		},
		{
			name:       "offline backends beyond MaxSlots get no probe",
			infos:      []setInfo{{health: HealthOffline, weight: 1}, {health: HealthOffline, weight: 1}},
			pol:        Policy{MaxSlots: 1, MaxPerBackend: 16, Spares: 8},
			wantWanted: []int{1, 0}, wantTotal: 1, wantRoom: 1,
		},
		{
			name:       "MaxPerBackend caps a backend",
			infos:      []setInfo{online(0, 1)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 3, Spares: 8},
			wantWanted: []int{3}, wantTotal: 3, wantRoom: 16,
		},
		{
			name:       "unknown backends count as healthy",
			infos:      []setInfo{{health: HealthUnknown, prio: 2, weight: 1}, online(3, 1)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 2},
			wantWanted: []int{2, 0}, wantTotal: 2, wantRoom: 16,
		},
		{
			name:       "surplus is not a reason to shrink everything at once",
			infos:      []setInfo{withSlots(online(0, 1), 10, 10, 0)},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 2},
			periodic:   true,
			wantWanted: []int{2}, wantTotal: 2, wantRoom: 6,
		},
		{
			name: "slots claimed lately count as demand",
			infos: []setInfo{
				{health: HealthOnline, weight: 1, existing: 6, live: 6, claimed: 1, recent: 5},
				{health: HealthOnline, weight: 1, existing: 6, live: 6, recent: 3},
			},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 2},
			wantWanted: []int{5, 5}, wantTotal: 10, wantRoom: 4,
		},
		{
			name: "waiters count only beyond the slots soon idle again",
			infos: []setInfo{
				{health: HealthOnline, weight: 1, existing: 4, live: 4, claimed: 2, recent: 2, pending: 2},
			},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 1},
			waiting:    3,
			wantWanted: []int{4}, wantTotal: 4, wantRoom: 12,
		},
		{
			name: "slow start: a warming backend gets its share of its weight as it stands",
			infos: []setInfo{
				{health: HealthOnline, weight: 1024, warm: 1024},
				{health: HealthOnline, weight: 1024, warm: 1024},
				{health: HealthOnline, weight: 1024, warm: 256},
			},
			pol:        Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 9},
			wantWanted: []int{4, 4, 1}, wantTotal: 9, wantRoom: 16,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := plan(tt.infos, tt.pol, tt.waiting, tt.closing, tt.periodic)
			if !slices.Equal(got.wanted, tt.wantWanted) || got.total != tt.wantTotal || got.room != tt.wantRoom || got.shrink != tt.wantShrink {
				t.Errorf("plan = {wanted %v, total %d, room %d, shrink %v}, want {wanted %v, total %d, room %d, shrink %v}",
					got.wanted, got.total, got.room, got.shrink, tt.wantWanted, tt.wantTotal, tt.wantRoom, tt.wantShrink)
			}
		})
	}
}

func TestDistribute(t *testing.T) {
	tests := []struct {
		total   int
		weights []uint64
		ties    []uint64
		limit   int
		want    []int
	}{
		{0, []uint64{1, 1}, nil, 16, []int{0, 0}},
		{5, nil, nil, 16, []int{}},
		{5, []uint64{1, 1}, nil, 0, []int{0, 0}},
		{7, []uint64{1, 1, 1}, nil, 16, []int{3, 2, 2}},
		{2, []uint64{1, 1, 1}, nil, 16, []int{1, 1, 0}},
		{8, []uint64{1, 3}, nil, 16, []int{2, 6}},
		{10, []uint64{1, 1}, nil, 3, []int{3, 3}},
		{4, []uint64{5, 1}, nil, 16, []int{3, 1}},
		// Ties go to the lowest rank: the leftover slots, and the
		// first ones when there are fewer slots than backends.
		{7, []uint64{1, 1, 1}, []uint64{9, 3, 5}, 16, []int{2, 3, 2}},
		{8, []uint64{1, 1, 1}, []uint64{9, 3, 5}, 16, []int{2, 3, 3}},
		{2, []uint64{1, 1, 1}, []uint64{9, 3, 5}, 16, []int{0, 1, 1}},
		{9, []uint64{1, 1, 1, 1}, []uint64{4, 1, 3, 2}, 16, []int{2, 3, 2, 2}},
		// Weight still comes first.
		{4, []uint64{5, 1}, []uint64{2, 1}, 16, []int{3, 1}},
		{3, []uint64{1, 2}, []uint64{0, 1}, 16, []int{1, 2}},
	}
	for _, tt := range tests {
		if got := distribute(tt.total, tt.weights, tt.ties, tt.limit); !slices.Equal(got, tt.want) {
			t.Errorf("distribute(%d, %v, %v, %d) = %v, want %v", tt.total, tt.weights, tt.ties, tt.limit, got, tt.want)
		}
	}
}
