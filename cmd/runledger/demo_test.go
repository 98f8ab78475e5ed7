package main

import (
	"context"
	"strings"
	"testing"
)

// runledger demo refuses flags it cannot honour before it talks to a server.
func TestDemoRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--stale-after", "30s"}, "--stale-after must be between 1m0s and 24h0m0s"},
		{[]string{"--workers", "0"}, "--workers and --businesses must be at least 1"},
		{[]string{"--duration", "-1s"}, "--duration must not be negative"},
	} {
		err := runDemo(context.Background(), append(c.args, "--url", "http://127.0.0.1:1", "--data-dir", t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("demo %v: %v, want %q", c.args, err, c.want)
		}
	}
}
