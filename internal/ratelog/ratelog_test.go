package ratelog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/fakeclock"
)

func TestOneLinePerKindPerInterval(t *testing.T) {
	var buf bytes.Buffer
	clock := fakeclock.New(time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC))
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Second)
	l.now = clock.Now
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		l.Log(ctx, slog.LevelError, "unreachable", "request failed")
	}
	l.Log(ctx, slog.LevelError, "timeout", "request failed")
	clock.Advance(time.Second)
	if !l.Log(ctx, slog.LevelError, "unreachable", "request failed") {
		t.Fatal("nothing written after the interval")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[2], "suppressed=999") || !strings.Contains(lines[1], "kind=timeout") {
		t.Fatalf("lines = %q", lines)
	}
}
