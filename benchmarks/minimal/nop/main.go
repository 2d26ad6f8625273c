// Command nop prints one line and exits: the size of the Go runtime and of
// the os package alone, which ../device is compared with so that the
// footprint table shows what E4 itself adds.
package main

import "os"

func main() {
	os.Stdout.WriteString("nop\n")
}
