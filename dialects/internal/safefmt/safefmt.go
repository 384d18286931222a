// Package safefmt prints values that hold secrets, such as a driver
// configuration with its password, as a description that leaves the
// secrets out, whatever the fmt verb.
package safefmt

import (
	"fmt"
	"io"
	"strconv"
)

// Format writes desc for f's verb: quoted for %q, as it is for every other
// verb (%v, %+v, %#v, %s, %x, %d...), so fmt never prints the fields of
// the value being formatted. A type calls it from its own Format method.
func Format(f fmt.State, verb rune, desc string) {
	if verb == 'q' {
		desc = strconv.Quote(desc)
	}
	io.WriteString(f, desc)
}
