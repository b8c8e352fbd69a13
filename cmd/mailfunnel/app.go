package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailfunnel/mailfunnel/query"
)

// newApp builds the Fiber app shared by ingest and query: one listener, the
// body limit, JSON errors for everything Fiber itself rejects (413 for large
// bodies, 405, ...), and a latency histogram per route.
func newApp(bodyLimit int, reg prometheus.Registerer) *fiber.App {
	app := fiber.New(fiber.Config{
		BodyLimit:             bodyLimit,
		DisableStartupMessage: true,
		ReadTimeout:           60 * time.Second,
		WriteTimeout:          60 * time.Second,
		IdleTimeout:           120 * time.Second,
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			code := fiber.StatusInternalServerError
			msg := "internal error"
			var fe *fiber.Error
			if errors.As(err, &fe) {
				code, msg = fe.Code, fe.Message
				if code == fiber.StatusRequestEntityTooLarge {
					msg = "body too large: the limit is " + strconv.Itoa(bodyLimit) + " bytes (--body-limit)"
				}
			}
			return query.Error(c, code, msg)
		},
	})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mailfunnel_http_request_duration_seconds",
		Help:    "HTTP request latency by route and status.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"route", "code"})
	reg.MustRegister(lat)
	app.Use(func(c *fiber.Ctx) error {
		t := time.Now()
		err := c.Next()
		code := c.Response().StatusCode()
		if err != nil {
			var fe *fiber.Error
			if errors.As(err, &fe) {
				code = fe.Code
			}
		}
		lat.WithLabelValues(c.Route().Path, strconv.Itoa(code)).Observe(time.Since(t).Seconds())
		return err
	})
	return app
}
