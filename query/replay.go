package query

import (
	"context"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/mailfunnel/mailfunnel/engine"
)

// Replayer re-derives the aggregates from the log; *engine.Engine
// implements it. StartReplay refuses synchronously (a replay running, a
// trimmed log) or returns the work to run.
type Replayer interface {
	StartReplay() (func(ctx context.Context) error, error)
	ReplayStatus() engine.ReplayStatus
}

var _ Replayer = (*engine.Engine)(nil)

// MountReplay adds POST /v1/replay (start re-deriving every aggregate from
// the log in the background: 202 with the status, 409 when one runs or
// the log was trimmed) and GET /v1/replay (progress of the current or last
// one). Replays run under ctx, which should end at shutdown.
func MountReplay(ctx context.Context, v1 fiber.Router, rp Replayer) {
	v1.Get("/replay", func(c *fiber.Ctx) error {
		return c.JSON(rp.ReplayStatus())
	})
	v1.Post("/replay", func(c *fiber.Ctx) error {
		run, err := rp.StartReplay()
		switch {
		case errors.Is(err, engine.ErrReplayRunning), errors.Is(err, engine.ErrLogTrimmed):
			return Error(c, fiber.StatusConflict, err.Error())
		case err != nil:
			return Error(c, fiber.StatusInternalServerError, "replay: "+err.Error())
		}
		go func() { _ = run(ctx) }() // the outcome is in ReplayStatus and the log
		return c.Status(fiber.StatusAccepted).JSON(rp.ReplayStatus())
	})
}
