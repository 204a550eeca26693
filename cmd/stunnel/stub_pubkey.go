package main

// Placeholder until the real `stunnel pubkey` lands; its author deletes this file.
func cmdPubkey(args []string) int { return notYet("pubkey") }
