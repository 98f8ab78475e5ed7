package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"

	"github.com/runledger/runledger/api/web"
)

// pageCSP forbids everything the page does not need: no inline script or
// style, no other origin, no framing, no form posts, no <base>.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// pageFile is one embedded file of the page, ready to serve.
type pageFile struct {
	name        string
	body        []byte
	contentType string
	etag        string
}

// routesPage serves the page: the index at exactly / and its files under
// /assets/. There is no catch-all, so unknown paths stay API 404s. These
// routes are not part of the API document (openapi.json) and not in Routes.
func (s *Server) routesPage() {
	files, err := loadPage(web.FS)
	if err != nil {
		panic(fmt.Sprintf("api: the embedded page is broken: %v", err)) // a build defect, caught by every test
	}
	s.mux.Handle("GET /{$}", s.instrument("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		servePageFile(w, r, files["index.html"])
	}))
	s.mux.Handle("GET /assets/{file}", s.instrument("GET /assets/{file}", func(w http.ResponseWriter, r *http.Request) {
		f, ok := files["assets/"+r.PathValue("file")]
		if !ok {
			s.writeError(w, r, newProblem(CodeNotFound, "no such page asset"))
			return
		}
		servePageFile(w, r, f)
	}))
}

// loadPage reads every embedded file once, with its type and a content hash
// for ETag revalidation (the files change only with the binary).
func loadPage(fsys fs.FS) (map[string]pageFile, error) {
	files := map[string]pageFile{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(name))
		switch path.Ext(name) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			return fmt.Errorf("%s: unknown content type", name)
		}
		sum := sha256.Sum256(body)
		files[name] = pageFile{name: name, body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := files["index.html"]; !ok {
		return nil, fmt.Errorf("index.html is missing")
	}
	return files, nil
}

func servePageFile(w http.ResponseWriter, r *http.Request, f pageFile) {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache") // revalidate with the ETag: a new binary serves new files at once
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
