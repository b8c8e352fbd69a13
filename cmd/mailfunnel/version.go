package main

import "runtime/debug"

// Version is set at build time with -ldflags "-X main.Version=v1.2.3".
var Version = ""

// version falls back to the module version and VCS revision recorded by the
// Go toolchain, so that a plain 'go build' still says what it is.
func version() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
