package servetest_test

import (
	"net/http"
	"testing"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestServeKillAndRestart(t *testing.T) {
	srv := servetest.Start(t, servetest.Options{DatabaseURL: pgtest.URL(t), Secret: "servetest-secret-servetest-secret-0123"})
	first := srv.Pid()
	srv.Kill()
	if _, err := http.Get(srv.URL + "/healthz"); err == nil {
		t.Fatal("a killed server still answers")
	}
	srv.Restart()
	if srv.Pid() == first {
		t.Fatal("restart reused the killed process")
	}
	res, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("readyz after restart = %d", res.StatusCode)
	}
}
