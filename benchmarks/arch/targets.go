package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
)

// target is one architecture the runner builds for: a GOARCH, the variant
// variables that select an instruction set within it, and how to run its
// binaries on this machine.
type target struct {
	Name    string   // label in tables and file names
	GOARCH  string   //
	Env     []string // extra build variables, e.g. GOARM=6
	QEMU    string   // qemu-user name of the architecture ("arm", "aarch64")
	QEMUCPU string   // -cpu model matching the variant; empty for qemu's default
}

// allTargets are the architectures of the seed ("ARM, AVR, MIPS, x86"; AVR
// has no Go port) and the other Linux ports IoT gateways use. The qemu CPU
// models are those of the variant: an ARM11 for GOARM=6 (Raspberry Pi 1 and
// Zero), a Cortex-A7 for GOARM=7, a 24Kc without FPU for soft-float mipsle.
var allTargets = []target{
	{Name: "amd64", GOARCH: "amd64", QEMU: "x86_64"},
	{Name: "386", GOARCH: "386", QEMU: "i386"},
	{Name: "arm-v6", GOARCH: "arm", Env: []string{"GOARM=6"}, QEMU: "arm", QEMUCPU: "arm1176"},
	{Name: "arm-v7", GOARCH: "arm", Env: []string{"GOARM=7"}, QEMU: "arm", QEMUCPU: "cortex-a7"},
	{Name: "arm64", GOARCH: "arm64", QEMU: "aarch64"},
	{Name: "mips", GOARCH: "mips", QEMU: "mips"},
	{Name: "mipsle-softfloat", GOARCH: "mipsle", Env: []string{"GOMIPS=softfloat"}, QEMU: "mipsel", QEMUCPU: "24Kc"},
	{Name: "mips64", GOARCH: "mips64", QEMU: "mips64"},
	{Name: "riscv64", GOARCH: "riscv64", QEMU: "riscv64"},
	{Name: "ppc64le", GOARCH: "ppc64le", QEMU: "ppc64le"},
	{Name: "s390x", GOARCH: "s390x", QEMU: "s390x"},
}

// selectTargets returns the targets named in a comma-separated list, in
// the order of allTargets; "all" or an empty list selects every one.
func selectTargets(list string) ([]target, error) {
	if list == "" || list == "all" {
		return slices.Clone(allTargets), nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.ContainsFunc(allTargets, func(t target) bool { return t.Name == name }) {
			return nil, fmt.Errorf("unknown architecture %q; known: %s", name, strings.Join(targetNames(), ", "))
		}
		want[name] = true
	}
	var out []target
	for _, t := range allTargets {
		if want[t.Name] {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no architecture selected")
	}
	return out, nil
}

func targetNames() []string {
	names := make([]string, len(allTargets))
	for i, t := range allTargets {
		names[i] = t.Name
	}
	return names
}

// native reports whether this machine runs the target's binaries itself:
// its own GOARCH, and 386 on amd64, whose kernels run 32-bit x86 binaries
// (qemu-i386 crashes on Go's 386 binaries, so it is no alternative).
func (t target) native() bool {
	host := runtime.GOARCH
	return t.GOARCH == host || (host == "amd64" && t.GOARCH == "386")
}

// buildEnv is the environment of go build for the target: static binaries,
// as a device without the build machine's C library needs.
func (t target) buildEnv() []string {
	return append([]string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + t.GOARCH}, t.Env...)
}

// variant describes the instruction-set variables, e.g. "GOARM=6".
func (t target) variant() string { return strings.Join(t.Env, " ") }

// emulator is the command prefix that runs the target's binaries: nothing
// when native, else the qemu-user binary (plugin-capable when pluginQEMU)
// with the target's CPU model.
func (t target) emulator(pluginQEMU bool) []string {
	if t.native() {
		return nil
	}
	cmd := []string{"qemu-" + t.QEMU + "-static"}
	if pluginQEMU {
		cmd[0] = "qemu-" + t.QEMU
	}
	if t.QEMUCPU != "" {
		cmd = append(cmd, "-cpu", t.QEMUCPU)
	}
	return cmd
}

// runsOn describes where the target's figures come from, for the tables.
func (t target) runsOn() string {
	if t.native() {
		return "native"
	}
	if t.QEMUCPU != "" {
		return "qemu-user, -cpu " + t.QEMUCPU
	}
	return "qemu-user"
}
