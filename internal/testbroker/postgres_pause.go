package testbroker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Pause stops the server and every backend (SIGSTOP): connections stay
// open and queries hang, as with a database host that stopped answering.
// Resume undoes it.
func (p *Postgres) Pause() error { return p.signalServer(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (p *Postgres) Resume() error { return p.signalServer(syscall.SIGCONT) }

// signalServer signals the postmaster and its children: the backends run
// in sessions of their own, so a process group does not reach them.
func (p *Postgres) signalServer(sig syscall.Signal) error {
	pid := p.PID()
	if pid == 0 {
		return errors.New("testbroker: PostgreSQL is not running")
	}
	pids := append([]int{pid}, childrenOf(pid)...)
	for _, child := range pids {
		if err := syscall.Kill(child, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("testbroker: signalling PostgreSQL process %d: %w", child, err)
		}
	}
	return nil
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": the command may hold spaces.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(data[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(string(fields[1])); err == nil && ppid == pid {
			if child, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil {
				out = append(out, child)
			}
		}
	}
	return out
}
