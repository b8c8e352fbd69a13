package query

import (
	"context"

	"github.com/gofiber/fiber/v2"

	"github.com/mailfunnel/mailfunnel/export"
)

// Exports is the exporter as the API needs it; *export.Exporter implements
// it.
type Exports interface {
	Export(ctx context.Context) (export.Run, error)
	Files() ([]export.File, error)
}

// MountExports adds GET /v1/exports (the files written, with rows,
// sequence ranges and bytes) and POST /v1/exports (export now, answering
// with the run) to the authenticated /v1 group.
func MountExports(v1 fiber.Router, x Exports) {
	v1.Get("/exports", func(c *fiber.Ctx) error {
		files, err := x.Files()
		if err != nil {
			return Error(c, fiber.StatusInternalServerError, "list exports: "+err.Error())
		}
		if files == nil {
			files = []export.File{}
		}
		return c.JSON(fiber.Map{"files": files})
	})
	v1.Post("/exports", func(c *fiber.Ctx) error {
		run, err := x.Export(c.UserContext())
		if err != nil {
			return Error(c, fiber.StatusInternalServerError, "export: "+err.Error())
		}
		return c.JSON(run)
	})
}
