// Package benchmarks measures the E4 crypto core against baselines taken in
// the same run: AES-256-GCM from the standard library, a serial AES-256 block
// chain through crypto/aes, the true bound of any CMAC-based construction (the
// same chain in assembly, see bound), and Ed25519 Sign/Verify, plus the batch
// API (UnprotectBatch, ProtectBatch) against one message at a time.
// Beside protect and unprotect (SK and PK, 64 B, 1 KiB, 16 KiB) it measures
// command processing, topic hashing and password derivation, and, as
// benchmarks that report heap-B/topic and heap-B/name, the heap a client
// holds per stored topic key and per cached topic name.
//
// Run on the target machine with
//
//	make bench
//
// which is go test -run '^$' -bench . -benchmem -count 5 ./benchmarks/ piped
// through ./benchmarks/ratio, which prints every E4 figure as a ratio to its
// baseline. go run ./benchmarks/arch runs the same benchmarks on every
// architecture (see README.md in this directory).
package benchmarks
