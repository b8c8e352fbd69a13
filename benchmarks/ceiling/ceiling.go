// Package ceiling is the baseline server of the ingest benchmarks: a bare
// Fiber app that reads each webhook body and answers 200 with the shape of
// mailfunnel's answer. It parses nothing and stores nothing, so its rate is
// the most any Fiber-based ingest can do on the machine with the same load
// generator. The in-process benchmark mounts it directly; make bench-ingest
// runs it as its own process (benchmarks/cmd/ceiling).
package ceiling

import "github.com/gofiber/fiber/v2"

// New returns the ceiling app, accepting POST /v1/webhooks/{provider} and
// /v1/webhooks/{provider}/{source} with bodies up to bodyLimit bytes.
func New(bodyLimit int) *fiber.App {
	app := fiber.New(fiber.Config{BodyLimit: bodyLimit, DisableStartupMessage: true})
	h := func(c *fiber.Ctx) error {
		_ = c.Body()
		return c.JSON(fiber.Map{"accepted": 0, "duplicates": 0})
	}
	app.Post("/v1/webhooks/:provider", h)
	app.Post("/v1/webhooks/:provider/:source", h)
	return app
}
