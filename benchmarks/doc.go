// Package benchmarks measures the E4 crypto core against baselines taken in
// the same run: AES-256-GCM from the standard library, a serial AES-256 block
// chain (the bound of any CMAC-based construction), and Ed25519 Sign/Verify.
//
// Run on the target machine with
//
//	make bench
//
// which is go test -run '^$' -bench . -benchmem -count 5 ./benchmarks/ piped
// through ./benchmarks/ratio, which prints every E4 figure as a ratio to its
// baseline.
package benchmarks
