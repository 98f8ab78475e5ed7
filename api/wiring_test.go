package api_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// serveWiringEnv, set, makes newEnv wire the projector and the API as serve
// does across replicas: appends NOTIFY the projector, the projector's
// batches NOTIFY the other replicas, and a Listener brings them to the
// API's feed (the projector here publishes nothing to it directly, as if it
// ran on another replica).
const serveWiringEnv = "RUNLEDGER_TEST_SERVE_WIRING"

// serveWiredSuites are the suites run again with serve's wiring: every
// read that takes ?after=, the streams, and the commands behind them.
const serveWiredSuites = `^(TestReadYourWrites|TestOperatorReadsTakeAPosition|TestReadAfterAPositionNotAppliedAnswers503|` +
	`TestContractRunLifecycle|TestServerSentEvents|TestServerSentEventsEndWhenRunGoesSilent|TestPauseAndResume|TestCancelOfPausedRun)$`

// TestSuitesWithServeWiring runs the suites above in a child test process
// whose harness uses NOTIFY and the Listener, so their reads wait on what
// arrives over LISTEN, not on the projector's direct call.
func TestSuitesWithServeWiring(t *testing.T) {
	if os.Getenv(serveWiringEnv) != "" {
		t.Skip("this is the child")
	}
	if testing.Short() {
		t.Skip("runs suites again in a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run", serveWiredSuites, "-test.count=1", "-test.v", "-test.timeout=4m")
	cmd.Env = append(os.Environ(), serveWiringEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives this test process
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("suites with serve's wiring: %v\n%s", err, out)
	}
	t.Logf("suites with serve's wiring passed:\n%s", passLines(out))
}

func passLines(out []byte) string {
	var lines []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "--- PASS") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}
