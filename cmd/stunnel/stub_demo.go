package main

// Placeholder until the real `stunnel demo` lands; its author deletes this file.
func cmdDemo(args []string) int { return notYet("demo") }
