// Package archtest holds no code: its test checks the import direction of
// the module, as ARCHITECTURE.md and the package documentation state it.
package archtest
