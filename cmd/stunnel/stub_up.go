package main

// Placeholder until the real `stunnel up` lands; its author deletes this file.
func cmdUp(args []string) int { return notYet("up") }
