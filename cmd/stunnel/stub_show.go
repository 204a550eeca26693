package main

// Placeholder until the real `stunnel show` lands; its author deletes this file.
func cmdShow(args []string) int { return notYet("show") }
