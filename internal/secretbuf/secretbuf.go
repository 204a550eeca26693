// Package secretbuf grows byte slices that hold secrets.
//
// append moves a full slice to a larger array and leaves the old one to the
// garbage collector as it was: every key already written to it stays in
// freed memory. Code that builds a secret-holding buffer piece by piece
// (a saved session state, a key file) reserves room with Grow before it
// appends, so the only array that ever held the secret is the one it
// returns, which its caller clears.
package secretbuf

// Grow returns b with room for at least n more bytes, like slices.Grow. When
// b's array is too small its bytes move to a new one and the old array is
// cleared up to its capacity, so the caller must use only the returned
// slice from then on (as it would after append).
func Grow(b []byte, n int) []byte {
	if n <= cap(b)-len(b) {
		return b
	}
	nb := make([]byte, len(b), max(2*cap(b), len(b)+n))
	copy(nb, b)
	clear(b[:cap(b)])
	return nb
}
