package query

import (
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness reports whether the server should receive traffic, and why not.
// details is shown in the /readyz body either way (lag, applied sequence).
type Readiness func() (ready bool, reason string, details map[string]any)

// MountProbes adds /healthz, /readyz and /metrics to r; none needs a token,
// so that orchestrators and Prometheus can reach them.
func MountProbes(r fiber.Router, ready Readiness, gatherer prometheus.Gatherer) {
	r.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	r.Get("/readyz", func(c *fiber.Ctx) error {
		ok, reason, details := ready()
		body := fiber.Map{"ready": ok}
		for k, v := range details {
			body[k] = v
		}
		if !ok {
			body["reason"] = reason
			return c.Status(fiber.StatusServiceUnavailable).JSON(body)
		}
		return c.JSON(body)
	})
	r.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})))
}
