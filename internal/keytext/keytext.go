// Package keytext finds text that has the shape of a secret stunnel reads,
// so that messages and logs which quote what someone typed (a name, an
// argument, a value) never repeat a key pasted into the wrong place.
package keytext

import "regexp"

// shape matches base64 of 32 bytes (a private key or PSK as stunnel genkey
// prints it, a ticket key's or group secret's base64) and 64 hex digits (a
// group secret). Public keys have that shape too, but no message needs to
// quote one.
var shape = regexp.MustCompile(`[A-Za-z0-9+/_-]{43}=|[0-9A-Fa-f]{64}`)

// Hidden replaces each key in a message.
const Hidden = "[hidden: looks like a key]"

// Hide replaces what looks like key material in s with Hidden.
func Hide(s string) string { return shape.ReplaceAllString(s, Hidden) }
