package safefmt

import (
	"fmt"
	"strings"
	"testing"
)

type secretive struct{ password string }

func (secretive) Format(f fmt.State, verb rune) { Format(f, verb, "secretive{}") }

func TestFormat(t *testing.T) {
	v := secretive{password: "S3cr3t-Pa55"}
	tests := []struct{ verb, want string }{
		{"%v", "secretive{}"}, {"%+v", "secretive{}"}, {"%#v", "secretive{}"},
		{"%s", "secretive{}"}, {"%q", `"secretive{}"`}, {"%x", "secretive{}"}, {"%d", "secretive{}"},
	}
	for _, tt := range tests {
		if got := fmt.Sprintf(tt.verb, v); got != tt.want {
			t.Errorf("Sprintf(%q) = %q, want %q", tt.verb, got, tt.want)
		}
		if got := fmt.Sprintf(tt.verb, struct{ V any }{v}); got == "" || strings.Contains(got, "S3cr3t") {
			t.Errorf("Sprintf(%q) of a struct holding it = %q", tt.verb, got)
		}
	}
}
