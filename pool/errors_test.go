package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// codeError stands for a driver's own error type.
type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d", e.code) }

// TestClaimErrorCommon checks which backend errors a ClaimError exposes to
// errors.As and leads its message with.
func TestClaimErrorCommon(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("connect to b: %w", err) }
	joined := func(err error) error { return fmt.Errorf("dial: %w", errors.Join(err)) }
	tests := []struct {
		name     string
		errs     []error
		wantCode int  // 0: none exposed
		lead     bool // the message starts with the code's text
	}{
		{"one backend", []error{wrap(&codeError{1045})}, 1045, true},
		{"through a one-error join", []error{joined(&codeError{7})}, 7, true},
		{"two alike", []error{wrap(&codeError{1045}), wrap(&codeError{1045})}, 1045, true},
		{"same type, other text", []error{wrap(&codeError{1045}), wrap(&codeError{1049})}, 1045, false},
		{"other types", []error{wrap(&codeError{1045}), wrap(errors.New("refused"))}, 0, false},
		{"a backend without error", []error{wrap(&codeError{1045}), nil}, 0, false},
		{"context", []error{wrap(context.DeadlineExceeded)}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &ClaimError{Err: ErrNoBackendsOnline}
			for _, err := range tt.errs {
				r := BackendReport{Err: err}
				if err != nil {
					r.LastError = err.Error()
				}
				e.Backends = append(e.Backends, r)
			}
			var ce *codeError
			found := errors.As(e, &ce)
			switch {
			case tt.wantCode == 0 && found:
				t.Errorf("errors.As found %v, want nothing", ce)
			case tt.wantCode != 0 && (!found || ce.code != tt.wantCode):
				t.Errorf("errors.As = %v, %v, want code %d", found, ce, tt.wantCode)
			}
			if !errors.Is(e, ErrNoBackendsOnline) {
				t.Error("the sentinel is lost")
			}
			if errors.Is(e, context.DeadlineExceeded) {
				t.Error("a backend's timeout passes for the claim's")
			}
			if lead := strings.HasPrefix(e.Error(), fmt.Sprintf("code %d (", tt.wantCode)); lead != tt.lead {
				t.Errorf("Error() = %q: leads with the code = %v, want %v", e.Error(), lead, tt.lead)
			}
		})
	}
}
