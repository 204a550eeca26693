package pkcs11key

// Origin is what the token says about where a key came from, read at
// Open. A key made in the token that could never leave it (what `stunnel
// genkey --pkcs11` makes) has no copy anywhere else: that is what a token
// is for. A key imported into the token (or unwrapped into it, or once
// extractable) is refused by no check at Open as long as it cannot leave
// the token now, since that is how several gateways of a group share one
// key (docs/GATEWAY-GROUPS.md), or how a deployment moves its key from a
// file into a token without telling every peer a new public key; but a
// copy of it may exist outside, so stunnel says so at start (Weakness),
// and refuses it when the config says pkcs11_require_local = true.
type Origin struct {
	Known            bool // the token gave CKA_LOCAL, CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE
	Local            bool // CKA_LOCAL: generated in the token, not imported or unwrapped
	NeverExtractable bool // CKA_NEVER_EXTRACTABLE: never allowed to leave the token
	AlwaysSensitive  bool // CKA_ALWAYS_SENSITIVE: its value was never readable
}

// Generated reports whether the key was made in the token and could never
// leave it.
func (o Origin) Generated() bool {
	return o.Known && o.Local && o.NeverExtractable && o.AlwaysSensitive
}

// Weakness is why a copy of the key may exist outside the token, or ""
// when the token says none can.
func (o Origin) Weakness() string {
	switch {
	case !o.Known:
		return "the token does not say where it came from (no CKA_LOCAL, CKA_NEVER_EXTRACTABLE or CKA_ALWAYS_SENSITIVE)"
	case !o.Local:
		return "it was imported into the token (CKA_LOCAL false), so a copy of it may exist outside the token"
	case !o.NeverExtractable:
		return "it was extractable once (CKA_NEVER_EXTRACTABLE false), so a copy of it may exist outside the token"
	case !o.AlwaysSensitive:
		return "it was not always sensitive (CKA_ALWAYS_SENSITIVE false), so its value may have been read"
	}
	return ""
}

// String is the origin's name in `stunnel show --json` (static_key.origin):
// "generated" (in the token, never extractable, always sensitive),
// "imported" (CKA_LOCAL false), "extractable_once" (generated in the token
// but extractable or readable once) or "unknown" (the token does not say).
func (o Origin) String() string {
	switch {
	case o.Generated():
		return "generated"
	case !o.Known:
		return "unknown"
	case !o.Local:
		return "imported"
	}
	return "extractable_once"
}
