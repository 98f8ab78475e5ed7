package api_test

import (
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/runledger/runledger/api/web"
)

const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

// The page is served at exactly / and under /assets/, with its safety
// headers; every file the index and the modules load is there.
func TestPageIsServedWithItsSafetyHeaders(t *testing.T) {
	e := newEnv(t)
	res, index := get(t, e.url+"/")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(index, `<script type="module" src="/assets/main.js">`) {
		t.Fatalf("GET / = %d %s:\n%s", res.StatusCode, res.Header.Get("Content-Type"), index)
	}
	// Every asset the page references by URL, and every module imported.
	refs := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(index, -1)
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	seen := map[string]bool{}
	var queue []string
	for _, m := range refs {
		queue = append(queue, m[1])
	}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		res, body := get(t, e.url+path)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s = %d", path, res.StatusCode)
		}
		for k, v := range map[string]string{"Content-Security-Policy": wantCSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
			if got := res.Header.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
			}
		}
		if strings.HasSuffix(path, ".js") {
			if ct := res.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
				t.Errorf("GET %s: Content-Type %q", path, ct)
			}
			for _, m := range imports.FindAllStringSubmatch(body, -1) {
				queue = append(queue, "/assets/"+m[1])
			}
		}
	}
	for _, want := range []string{"/assets/main.js", "/assets/watcher.js", "/assets/app.css", "/assets/icon.svg", "/assets/operator.js"} {
		if !seen[want] {
			t.Errorf("the page never loads %s (loaded %v)", want, seen)
		}
	}
	if res.Header.Get("Content-Security-Policy") != wantCSP || res.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("index headers = %v", res.Header)
	}

	// Revalidation: the ETag answers 304 with no body.
	etag := res.Header.Get("ETag")
	if again, body := get(t, e.url+"/", "If-None-Match", etag); etag == "" || again.StatusCode != 304 || body != "" {
		t.Fatalf("revalidation with ETag %q = %d", etag, again.StatusCode)
	}
	// An unknown asset is an API 404; there is no catch-all, so an unknown
	// path is not the page either.
	if res, body := get(t, e.url+"/assets/nope.js"); res.StatusCode != 404 || res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("GET /assets/nope.js = %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	for _, path := range []string{"/nope", "/index.html", "/assets/", "/assets/../api/page.go", "/v1"} {
		if res, body := get(t, e.url+path); res.StatusCode != 404 || strings.Contains(body, "<html") {
			t.Errorf("GET %s = %d, want a 404 that is not the page", path, res.StatusCode)
		}
	}
}

// The page's code never builds HTML from strings, never evaluates strings,
// and has no inline script or style: what the CSP forbids, the code does not
// need. Tests and package.json are not embedded.
func TestPageCodeRendersTextOnly(t *testing.T) {
	forbidden := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"](style|on)|localStorage|console\.`)
	inline := regexp.MustCompile(`<script(?:\s[^>]*)?>[^<\s]|<style|\sstyle=|\son[a-z]+=`)
	n := 0
	err := fs.WalkDir(web.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		body, err := fs.ReadFile(web.FS, path)
		if err != nil {
			return err
		}
		if strings.Contains(path, "test") || strings.HasSuffix(path, ".json") {
			t.Errorf("%s is embedded", path)
		}
		if strings.HasSuffix(path, ".js") {
			if m := forbidden.Find(body); m != nil {
				t.Errorf("%s uses %q", path, m)
			}
		}
		if strings.HasSuffix(path, ".html") {
			if m := inline.Find(body); m != nil {
				t.Errorf("%s has inline %q", path, m)
			}
		}
		return nil
	})
	if err != nil || n < 8 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}
