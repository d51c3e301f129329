package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3 document of every route of the router; a test keeps them equal.
//
//go:embed openapi.yaml
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(OpenAPI)
}
