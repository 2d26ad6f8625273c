package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// deviceScript runs on the device, from its target directory: the core
// tests (each from the directory layout its testdata paths expect), then
// the benchmarks. Its output is what --merge reads. POSIX sh, so that
// busybox systems run it.
const deviceScript = `#!/bin/sh
# Runs the E4 core tests, then the benchmarks, on this device. Keep the
# output and give it to the runner on the build machine:
#   sh run.sh | tee mydevice.txt
#   go run ./benchmarks/arch --merge mydevice.txt
# BENCHTIME (default 1s) and COUNT (default 3) tune the benchmarks.
cd "$(dirname "$0")" || exit 1
failed=""
./e4.test -test.count=1 >tests-e4.log 2>&1 || failed="$failed e4"
(cd siv && ./siv.test -test.count=1) >tests-siv.log 2>&1 || failed="$failed e4/siv"
(cd store && ./store.test -test.count=1) >tests-store.log 2>&1 || failed="$failed e4/store"
(cd keccak && ./keccak.test -test.count=1) >tests-keccak.log 2>&1 || failed="$failed e4/internal/keccak"
if [ -n "$failed" ]; then
  echo "` + testsLine + `FAILED in$failed (see tests-*.log)"
  exit 1
fi
echo "` + testsLine + `passed (e4, e4/siv, e4/store, e4/internal/keccak)"
./bench.test -test.run='^$' -test.bench="${BENCH:-.}" -test.benchmem \
  -test.benchtime="${BENCHTIME:-1s}" -test.count="${COUNT:-3}"
`

// bundleReadme explains a --build-only directory to whoever copies it to a
// device.
const bundleReadme = `# E4 benchmarks for your device

One directory per architecture, each self-contained: copy the one that matches
your device (see the table), run its script there, bring the output back.

| directory | for | Go settings |
|---|---|---|
%s

` + "```" + `sh
scp -r arm-v7 pi@device:/tmp/e4bench          # any copy will do
ssh pi@device sh /tmp/e4bench/run.sh | tee mydevice.txt
go run ./benchmarks/arch --merge mydevice.txt  # on the build machine, in the e4kit tree
` + "```" + `

The script runs the E4 core tests first (the known-answer vectors included, from
the directory's testdata/) and stops if they fail, then the benchmarks with the
usual ` + "`go test -bench`" + ` output. ` + "`BENCHTIME=200ms COUNT=1 sh run.sh`" + ` shortens it;
the password derivation needs 64 MiB of free memory. ` + "`--merge`" + ` names the device
after the file (mydevice), or takes ` + "`label=file`" + `, and adds it to the table, the
JSON and the charts in benchmarks/results/.

The binaries are static (CGO_ENABLED=0) and need only a Linux kernel.
`

// buildBundle writes the per-target binaries, the device script, the
// testdata and a README into dir.
func buildBundle(ctx context.Context, root, dir string, targets []target, p *progress) error {
	var rows []string
	for _, t := range targets {
		p.begin(t.Name, "build")
		err := buildBundleTarget(ctx, root, filepath.Join(dir, t.Name), t)
		p.end(t.Name, err)
		if err != nil {
			return err
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", t.Name, deviceHint(t), dash(strings.Join(append([]string{"GOARCH=" + t.GOARCH}, t.Env...), " "))))
		p.finish(t.Name, "built")
	}
	readme := fmt.Sprintf(bundleReadme, strings.Join(rows, "\n"))
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(readme), 0o644)
}

// buildBundleTarget lays out one target's directory:
//
//	bench.test  e4.test  siv/siv.test  store/store.test  testdata/  run.sh
//
// e4.test reads testdata/ and siv.test ../testdata/, as in the source tree.
func buildBundleTarget(ctx context.Context, root, dir string, t target) error {
	for _, sub := range []string{"siv", "store", "keccak"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	env := t.buildEnv()
	builds := [][]string{
		{"go", "test", "-c", "-o", filepath.Join(dir, "bench.test"), "./benchmarks"},
		{"go", "test", "-c", "-o", filepath.Join(dir, "e4.test"), "./e4"},
		{"go", "test", "-c", "-o", filepath.Join(dir, "siv", "siv.test"), "./e4/siv"},
		{"go", "test", "-c", "-o", filepath.Join(dir, "store", "store.test"), "./e4/store"},
		{"go", "test", "-c", "-o", filepath.Join(dir, "keccak", "keccak.test"), "./e4/internal/keccak"},
	}
	for _, argv := range builds {
		if err := runQuiet(ctx, root, env, argv); err != nil {
			return err
		}
	}
	if err := copyTree(filepath.Join(root, "e4", "testdata"), filepath.Join(dir, "testdata")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "run.sh"), []byte(deviceScript), 0o755)
}

// deviceHint names typical devices of a target.
func deviceHint(t target) string {
	hints := map[string]string{
		"amd64":            "x86-64 PCs, gateways",
		"386":              "32-bit x86 (Intel Quark, old Atom)",
		"arm-v6":           "ARM11: Raspberry Pi 1 and Zero",
		"arm-v7":           "Cortex-A7/A8/A9: Raspberry Pi 2, BeagleBone",
		"arm64":            "Raspberry Pi 3/4/5 (64-bit OS), ARM servers",
		"mips":             "big-endian MIPS32 with FPU",
		"mipsle-softfloat": "MIPS32 routers without FPU (MT7621, ath79)",
		"mips64":           "big-endian MIPS64 (Octeon)",
		"riscv64":          "RISC-V boards (VisionFive, Milk-V)",
		"ppc64le":          "POWER8 and later",
		"s390x":            "IBM Z",
	}
	return dash(hints[t.Name])
}

// copyTree copies the regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
