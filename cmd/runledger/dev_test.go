package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

// The banner's page URLs sign in by a token in the fragment (never the
// query): one for the dev business's user, one for an operator of every business.
func TestDevBannerPrintsPageURLs(t *testing.T) {
	auth, err := api.NewAuthenticator(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printDevBanner(&out, auth, devBanner{URL: "http://127.0.0.1:8080", DatabaseURL: "postgres://u:secret@localhost:5432/runledger", SecretSource: ".data/auth-secret", HeartbeatMinInterval: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	urls := regexp.MustCompile(`http://127\.0\.0\.1:8080/#token=\S+`).FindAllString(out.String(), -1)
	if len(urls) != 2 {
		t.Fatalf("banner has %d page URLs:\n%s", len(urls), out.String())
	}
	want := []struct {
		business string
		role     api.Role
	}{{devBusiness, api.RoleUser}, {api.AnyBusiness, api.RoleOperator}}
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if u.RawQuery != "" || u.Path != "/" {
			t.Fatalf("page URL %q: the token must ride in the fragment of /", raw)
		}
		frag, err := url.ParseQuery(u.Fragment)
		if err != nil {
			t.Fatal(err)
		}
		claims, err := auth.Parse(frag.Get("token"))
		if err != nil {
			t.Fatalf("page URL %q: %v", raw, err)
		}
		if claims.BusinessID != want[i].business || claims.Role != want[i].role {
			t.Fatalf("page URL %d signs in as %s of %s, want %s of %s", i, claims.Role, claims.BusinessID, want[i].role, want[i].business)
		}
	}
	if bytes.Contains(out.Bytes(), []byte("secret@")) {
		t.Fatal("the banner prints the database password")
	}
}

// dev refuses a bad configuration before it initialises a cluster: nothing
// is written to the data directory.
func TestDevValidatesFlagsBeforeInitdb(t *testing.T) {
	for _, args := range [][]string{
		{"--heartbeat-min-interval", "10m"}, // more than a tenth of the TTL
		{"--log-level", "loud"},
		{"--request-timeout", "0s"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		err := runDev(context.Background(), append([]string{"--data-dir", dir, "--addr", "127.0.0.1:0"}, args...))
		if err == nil {
			t.Fatalf("dev %v: no error", args)
		}
		if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
			t.Errorf("dev %v failed (%v) after writing %s", args, err, dir)
		}
	}
}
