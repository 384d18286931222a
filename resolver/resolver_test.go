package resolver

import (
	"context"
	"testing"
)

func TestParseAddrs(t *testing.T) {
	tests := []struct {
		name    string
		port    uint16
		in      []string
		want    []Backend
		wantErr bool
	}{
		{"with ports", 5432, []string{"h1:5433", "10.0.0.1:6000"}, []Backend{
			{Host: "h1", Addr: "h1:5433", Weight: 1},
			{Host: "10.0.0.1", Addr: "10.0.0.1:6000", Weight: 1},
		}, false},
		{"default port", 3306, []string{"db", "[::1]"}, []Backend{
			{Host: "db", Addr: "db:3306", Weight: 1},
			{Host: "::1", Addr: "[::1]:3306", Weight: 1},
		}, false},
		{"no default port", 0, []string{"db"}, nil, true},
		{"port zero", 1, []string{"db:0"}, nil, true},
		{"port too big", 1, []string{"db:70000"}, nil, true},
		{"empty", 1, nil, nil, true},
		{"empty host", 1, []string{":5432"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddrs(tt.port, tt.in...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseAddrs(%d, %q) error = %v, want error %v", tt.port, tt.in, err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseAddrs(%d, %q) = %v, want %v", tt.port, tt.in, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("ParseAddrs(%d, %q)[%d] = %+v, want %+v", tt.port, tt.in, i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestNewStaticRejectsDuplicatesAndBadAddrs(t *testing.T) {
	b := Backend{Host: "h", Addr: "h:1"}
	if _, err := NewStatic(b, b); err == nil {
		t.Error("NewStatic with a duplicate backend succeeded, want error")
	}
	if _, err := NewStatic(Backend{Addr: "nope"}); err == nil {
		t.Error("NewStatic with address \"nope\" succeeded, want error")
	}
}

func TestStaticRun(t *testing.T) {
	bs, err := ParseAddrs(0, "127.0.0.1:1", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStatic(bs...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan error)
	go func() {
		done <- s.Run(ctx, UpdateFunc(func(got []Backend) {
			calls++
			if len(got) != 2 {
				t.Errorf("update got %d backends, want 2", len(got))
			}
			cancel()
		}))
	}()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("update called %d times, want 1", calls)
	}
}

func TestKeyString(t *testing.T) {
	tests := []struct {
		k    Key
		want string
	}{
		{Key{Addr: "10.0.0.1:5432"}, "10.0.0.1:5432"},
		{Key{Host: "db1", Addr: "db1:5432"}, "db1:5432"},
		{Key{Host: "db1.test", Addr: "127.0.0.1:5432"}, "db1.test@127.0.0.1:5432"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.k, got, tt.want)
		}
	}
}
