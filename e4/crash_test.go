package e4

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/store"
)

// The crash test runs a client in a child process (this test binary again)
// that applies SetTopicKey commands in a loop, saving its state to a file
// after each one, and kills it at random instants. Every load afterwards
// must succeed and hold a consistent state: a prefix of the commands.

const crashEnv = "E4_CLIENT_CRASH_STATE"

// crashTopicKey is the key the child installs for topic i in round n; the
// parent recomputes it to check what it loads.
func crashTopicKey(round uint64, topic int) []byte {
	key := bytes.Repeat([]byte{byte(topic + 1)}, KeyLen)
	binary.LittleEndian.PutUint64(key, round+1)
	return key
}

const crashTopics = 4

func TestClientCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		return // only runs as the child of TestClientStateSurvivesKill
	}
	clk := newClock(1764000000)
	c, err := LoadClient(&Config{Now: clk.Now, Store: store.NewFile(path)})
	if errors.Is(err, store.ErrNotFound) {
		c, err = NewSymKeyClient(IDFromName("crash"), clientKey, &Config{Now: clk.Now, Store: store.NewFile(path)})
	}
	if err != nil {
		t.Fatal(err)
	}
	// Go on with the round the previous child was killed in, at the
	// clock it had then (an older command would be refused as stale).
	rounds := crashRounds(t, c)
	first := rounds[crashTopics-1] + 1
	clk.unix.Store(1764000000 + first)
	fmt.Println("ready")
	for round := uint64(first); ; round++ {
		clk.advance(time.Second)
		for topic := range crashTopics {
			cmd := mustCmd(command.NewSetTopicKey(crashTopicKey(round, topic), HashTopic(fmt.Sprint("crash/", topic))))
			p, err := ProtectCommand(cmd, clientKey, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			// The round the previous child was killed in may hold commands
			// it applied: they come again byte for byte, as exact replays.
			if _, err := c.HandleCommand(p); err != nil && !errors.Is(err, ErrReplay) {
				t.Fatal(err)
			}
		}
	}
}

func TestClientStateSurvivesKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client.state")
	iterations := 60
	if testing.Short() {
		iterations = 15
	}
	lastRound := uint64(0)
	for i := range iterations {
		killChildAtRandom(t, path)
		c, err := LoadClient(&Config{Store: store.NewFile(path)})
		if err != nil {
			t.Fatalf("iteration %d: load after kill: %v", i, err)
		}
		round := checkCrashState(t, c)
		if round < lastRound {
			t.Fatalf("iteration %d: state went back from round %d to %d", i, lastRound, round)
		}
		lastRound = round
	}
	if lastRound == 0 {
		t.Fatal("the child never got past its first round")
	}
}

// killChildAtRandom starts the child, waits until it runs, lets it work for
// a random while and kills it with SIGKILL.
func killChildAtRandom(t *testing.T, path string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestClientCrashChild$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not start: %q, %v\n%s", line, err, stderr.String())
	}
	time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child ended by itself before the kill: %v\n%s", cmd.ProcessState, stderr.String())
	}
}

// checkCrashState verifies the loaded state and returns the round of topic 0.
func checkCrashState(t *testing.T, c *Client) uint64 {
	t.Helper()
	return uint64(crashRounds(t, c)[0] + 1)
}

// crashRounds returns, per topic, the round of the key it holds (-1 for
// none), after checking that each key is one the child sent and that the
// topics form a prefix of the child's command sequence: commands are applied
// in order, so topic i is one round behind topic 0 at most, and never ahead
// of topic i-1.
func crashRounds(t *testing.T, c *Client) [crashTopics]int64 {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	var rounds [crashTopics]int64
	for topic := range crashTopics {
		rounds[topic] = -1
		tk := c.topics[HashTopic(fmt.Sprint("crash/", topic))]
		if tk == nil {
			continue
		}
		round := binary.LittleEndian.Uint64(tk.key[:]) - 1
		if !bytes.Equal(tk.key[:], crashTopicKey(round, topic)) {
			t.Fatalf("topic %d holds a key the child never sent: %x", topic, tk.key)
		}
		rounds[topic] = int64(round)
	}
	for topic := 1; topic < crashTopics; topic++ {
		if rounds[topic] > rounds[topic-1] || rounds[topic]+1 < rounds[0] {
			t.Fatalf("state is not a prefix of the commands: rounds %v", rounds)
		}
	}
	return rounds
}
