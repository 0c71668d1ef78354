// Package ui is the web console's files: plain HTML, CSS and JavaScript,
// embedded in the binary and served as they are (no build step, nothing
// fetched from elsewhere). The console asks the node's API for every
// piece of data it shows, sending the token the user typed in; the files
// themselves hold no data, so they are served to anyone. docs/console.md
// is the tour.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Static is the console's files, rooted at the directory /ui/ serves.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}

// csp allows the page its own scripts, styles and API only: nothing
// inline, nothing from elsewhere, and no framing (clickjacking).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the console's files; mount it with the /ui prefix
// stripped.
func Handler() http.Handler {
	fileServer := http.FileServerFS(Static())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// The files change only with the binary; revalidating is cheap
		// (embedded files carry no modification time, so no 304s either,
		// but they are small).
		h.Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	})
}
