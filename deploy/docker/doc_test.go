// Package docker holds the tests of the container deployment: the static
// checks of the Dockerfile and compose files (files_test.go, in every
// `go test ./...`) and the compose test against real containers
// (compose_test.go, run by `make compose-test`, which builds the image).
package docker
