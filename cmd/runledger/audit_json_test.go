package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/internal/servetest"
)

// `audit --json` stays the array of timeline entries it always was (scripts
// parse it), compaction or not; the compaction itself is in the text output.
func TestAuditJSONStaysAnArrayAfterCompaction(t *testing.T) {
	w := newCrashWorld(t, 1, 30)
	if out, err := exec.Command(servetest.Binary(t), "compact", "--database-url", w.url, "--ended-before", "1h").CombinedOutput(); err != nil {
		t.Fatalf("compact: %v\n%s", err, out)
	}
	out, err := exec.Command(servetest.Binary(t), "audit", "--database-url", w.url, "--business", "b00", "--json").Output()
	if err != nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	var events []audit.TimelineEntry
	if err := json.Unmarshal(out, &events); err != nil || len(events) == 0 {
		t.Fatalf("audit --json is not a non-empty array of timeline entries (%v):\n%s", err, out)
	}
	text, err := exec.Command(servetest.Binary(t), "audit", "--database-url", w.url, "--business", "b00").Output()
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, text)
	}
	if !strings.Contains(string(text), "compacted on") {
		t.Fatalf("audit's text does not show the compaction:\n%s", text)
	}
}
