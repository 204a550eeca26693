package main

// Placeholder until the real `stunnel check` lands; its author deletes this file.
func cmdCheck(args []string) int { return notYet("check") }
