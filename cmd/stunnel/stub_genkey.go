package main

// Placeholder until the real `stunnel genkey` lands; its author deletes this file.
func cmdGenkey(args []string) int { return notYet("genkey") }
