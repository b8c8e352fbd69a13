package ingest_test

import (
	"net"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/require"
)

// serveLoopback serves app on a loopback port until the test ends and
// returns its address, for tests that need real connections (keep-alive
// reuse, parallel clients, raw bytes) rather than app.Test.
func serveLoopback(t *testing.T, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { require.NoError(t, app.Shutdown()) })
	return ln.Addr().String()
}
