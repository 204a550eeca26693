package handshake

import "errors"

// RefusalReason names the refusal err wraps, for counters and `show`
// ("resumptions refused by reason"): ticket_expired, ticket_key_unknown,
// ticket_invalid, ticket_reused, reauth_required, replay, stale_timestamp,
// unknown_peer, key_mismatch, decrypt, bad_mac1, bad_mac2, malformed,
// rate_limited, cipher_mismatch, or "other".
func RefusalReason(err error) string {
	for _, r := range refusalReasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

// refusalReasons is ordered: ErrReplay before ErrStaleTimestamp, which it wraps.
var refusalReasons = []struct {
	err  error
	name string
}{
	{ErrTicketExpired, "ticket_expired"},
	{ErrTicketKeyUnknown, "ticket_key_unknown"},
	{ErrTicketInvalid, "ticket_invalid"},
	{ErrTicketReused, "ticket_reused"},
	{ErrReauthRequired, "reauth_required"},
	{ErrReplay, "replay"},
	{ErrStaleTimestamp, "stale_timestamp"},
	{ErrUnknownPeer, "unknown_peer"},
	{ErrKeyMismatch, "key_mismatch"},
	{ErrDecrypt, "decrypt"},
	{ErrBadMAC1, "bad_mac1"},
	{ErrBadMAC2, "bad_mac2"},
	{ErrMalformed, "malformed"},
	{ErrRateLimited, "rate_limited"},
	{ErrCipherMismatch, "cipher_mismatch"},
}
