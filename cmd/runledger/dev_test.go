package main

import (
	"bytes"
	"net/url"
	"regexp"
	"testing"

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
	if err := printDevBanner(&out, auth, "http://127.0.0.1:8080", "postgres://u:secret@localhost:5432/runledger", ".data/auth-secret"); err != nil {
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
