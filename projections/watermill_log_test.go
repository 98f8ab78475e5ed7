package projections

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
)

func TestWatermillLogWritesItsFieldsAtTheMappedLevels(t *testing.T) {
	var out bytes.Buffer
	logger := watermillLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	withID := logger.With(watermill.LogFields{"msg_uuid": "m-1", "topic": "events"})
	withID.Trace("received", nil) // below debug: not written
	withID.Info("consuming", watermill.LogFields{"topic": "other"})
	withID.Error("commit failed", errors.New("boom"), watermill.LogFields{"group": "runs"})

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the info line (at debug) and the error line, got %d:\n%s", len(lines), out.String())
	}
	for _, want := range []string{"level=DEBUG", "msg=consuming", "msg_uuid=m-1", "topic=other"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("info line %q lacks %q", lines[0], want)
		}
	}
	if strings.Contains(lines[0], "topic=events") {
		t.Errorf("info line %q keeps the field its own fields replace", lines[0])
	}
	for _, want := range []string{"level=ERROR", "msg=\"commit failed\"", "msg_uuid=m-1", "topic=events", "group=runs", "error=boom"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("error line %q lacks %q", lines[1], want)
		}
	}
}

func TestWatermillLogWithDoesNotChangeItsParent(t *testing.T) {
	var out bytes.Buffer
	logger := watermillLogger(slog.New(slog.NewTextHandler(&out, nil)))
	_ = logger.With(watermill.LogFields{"msg_uuid": "m-1"})
	logger.Error("plain", nil, nil)
	if strings.Contains(out.String(), "m-1") {
		t.Fatalf("a child's field reached its parent's line: %s", out.String())
	}
}
