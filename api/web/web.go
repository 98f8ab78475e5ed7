// Package web holds runledger's page: the HTML, CSS and ES modules that
// `serve` and `dev` serve at / (see api/page.go), embedded in the binary so
// that `go build` is the whole build and the page works offline, with no CDN.
//
// The modules are plain JavaScript with no dependencies: watcher.js follows a
// business's active run so that its progress bar cannot get stuck (unit
// tests in test/, run with `node --test api/web/test/`); the others render
// the business view and the operator console with createElement and
// textContent only. Tests and package.json stay out of the embedded files.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static/index.html static/assets
var files embed.FS

// FS holds the page's files: index.html and assets/*.
var FS = mustSub(files, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded above: unreachable
	}
	return sub
}
