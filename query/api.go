package query

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/internal/secret"
	"github.com/mailfunnel/mailfunnel/storage"
)

// View is the read-only engine state the API serves. *engine.Engine
// implements it. Methods are safe for concurrent use and return values the
// caller owns.
type View interface {
	Funnel(engine.CampaignRef, engine.Range) (*engine.Funnel, error)
	Campaigns(source string) ([]engine.CampaignInfo, error)
	TimeseriesWith(ref engine.CampaignRef, window time.Duration, r engine.Range, opts engine.TimeseriesOptions) ([]engine.Point, error)
	Watermarks() ([]engine.Watermark, error)
	AllowedLateness() time.Duration
	Bounces(ref *engine.CampaignRef, dim string, r engine.Range) ([]engine.Group, error)
	Domains(ref *engine.CampaignRef, r engine.Range) ([]engine.DomainStats, error)
	Suppression(recipient string) (*engine.Suppression, error)
	Suppressions(reason, after string, limit int) ([]engine.Suppression, string, error)
	// LiftSuppression is the one write: it lifts a suppression and returns
	// it with the log position the lift was recorded at.
	LiftSuppression(recipient string) (*engine.Suppression, uint64, error)
}

var _ View = (*engine.Engine)(nil)

// DeadLetterLister lists rejected webhook bodies. storage.Log implements it.
type DeadLetterLister interface {
	DeadLetters(after uint64, limit int) ([]storage.DeadLetter, error)
}

// Config configures the API.
type Config struct {
	// Token is the API secret. Required.
	Token string
	// Logger; nil discards.
	Logger *slog.Logger
}

// API serves the query endpoints.
type API struct {
	cfg  Config
	view View
	dead DeadLetterLister
	log  *slog.Logger
}

// New returns the API over view.
func New(cfg Config, view View, dead DeadLetterLister) (*API, error) {
	if cfg.Token == "" {
		return nil, errors.New("query config: Token is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &API{cfg: cfg, view: view, dead: dead, log: cfg.Logger}, nil
}

// Mount adds the /v1 query routes to r, behind the API token. Routes added
// to the returned group later (exports, ...) share the authentication.
func (a *API) Mount(r fiber.Router) fiber.Router {
	g := r.Group("/v1", a.auth)
	g.Get("/funnel", a.funnel)
	g.Get("/campaigns", a.campaigns)
	g.Get("/timeseries", a.timeseries)
	g.Get("/watermarks", a.watermarks)
	g.Get("/bounces", a.bounces)
	g.Get("/domains", a.domains)
	g.Get("/suppressions", a.suppressions)
	g.Get("/suppressions/:recipient", a.suppression)
	g.Delete("/suppressions/:recipient", a.liftSuppression)
	g.Get("/deadletters", a.deadletters)
	return g
}

func (a *API) auth(c *fiber.Ctx) error {
	// Webhook routes have their own token; this group only guards queries.
	if strings.HasPrefix(c.Path(), "/v1/webhooks/") {
		return c.Next()
	}
	h := c.Get(fiber.HeaderAuthorization)
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") && secret.Equal(strings.TrimSpace(h[7:]), a.cfg.Token) {
		return c.Next()
	}
	return Error(c, fiber.StatusUnauthorized, "missing or wrong API token: send 'Authorization: Bearer TOKEN'")
}

// Error writes the contract's error body.
func Error(c *fiber.Ctx, status int, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": msg})
}

// viewError maps engine errors to statuses; unknown errors are logged and
// answered 500 without internals.
func (a *API) viewError(c *fiber.Ctx, err error) error {
	var amb *engine.AmbiguousError
	switch {
	case errors.As(err, &amb):
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": amb.Error(), "accounts": amb.Accounts})
	case errors.Is(err, engine.ErrNotFound):
		return Error(c, fiber.StatusNotFound, err.Error())
	case errors.Is(err, engine.ErrReplayRunning):
		return Error(c, fiber.StatusConflict, err.Error()+": try again when GET /v1/replay says done")
	case errors.Is(err, engine.ErrBadCursor):
		return Error(c, fiber.StatusBadRequest, "parameter 'after': "+err.Error()+" (pass a previous page's next)")
	}
	a.log.Error("query", "path", c.Path(), "err", err)
	return Error(c, fiber.StatusInternalServerError, "internal error")
}

func campaignRef(c *fiber.Ctx) (engine.CampaignRef, error) {
	ref := engine.CampaignRef{Source: c.Query("source"), Account: c.Query("account"), Campaign: c.Query("campaign")}
	if ref.Source == "" {
		return ref, errors.New("parameter 'source' is required")
	}
	if ref.Campaign == "" {
		return ref, errors.New("parameter 'campaign' is required")
	}
	return ref, nil
}

// timeRange parses from and to (RFC 3339, both optional).
func timeRange(c *fiber.Ctx) (engine.Range, error) {
	var r engine.Range
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &r.From}, {"to", &r.To}} {
		v := c.Query(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return r, fmt.Errorf("parameter %q: %q is not an RFC 3339 time such as 2026-11-23T10:00:00Z", p.name, v)
		}
		*p.dst = t.UTC()
	}
	if !r.From.IsZero() && !r.To.IsZero() && r.To.Before(r.From) {
		return r, errors.New("parameter 'to' is before 'from'")
	}
	return r, nil
}

func (a *API) funnel(c *fiber.Ctx) error {
	ref, err := campaignRef(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	r, err := timeRange(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	f, err := a.view.Funnel(ref, r)
	if err != nil {
		return a.viewError(c, err)
	}
	if wantsArrow(c) {
		return writeArrow(c, funnelRecord(f))
	}
	return c.JSON(f)
}

func (a *API) campaigns(c *fiber.Ctx) error {
	cs, err := a.view.Campaigns(c.Query("source"))
	if err != nil {
		return a.viewError(c, err)
	}
	if wantsArrow(c) {
		return writeArrow(c, campaignsRecord(cs))
	}
	return c.JSON(fiber.Map{"campaigns": cs})
}

func (a *API) timeseries(c *fiber.Ctx) error {
	ref, err := campaignRef(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	r, err := timeRange(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	wname := c.Query("window", "1h")
	w, ok := engine.Windows[wname]
	if !ok {
		return Error(c, fiber.StatusBadRequest, fmt.Sprintf("parameter 'window': %q is not one of 1m, 5m, 1h, 1d", wname))
	}
	var opts engine.TimeseriesOptions
	switch d := c.Query("distinct"); d {
	case "":
	case "recipients":
		opts.Distinct = true
	default:
		return Error(c, fiber.StatusBadRequest, fmt.Sprintf("parameter 'distinct': %q is not supported (only 'recipients')", d))
	}
	pts, err := a.view.TimeseriesWith(ref, w, r, opts)
	if err != nil {
		return a.viewError(c, err)
	}
	if wantsArrow(c) {
		return writeArrow(c, timeseriesRecord(pts, opts.Distinct))
	}
	return c.JSON(fiber.Map{"window": wname, "points": pts})
}

// watermarks reports each source's event-time progress and late events.
func (a *API) watermarks(c *fiber.Ctx) error {
	ws, err := a.view.Watermarks()
	if err != nil {
		return a.viewError(c, err)
	}
	return c.JSON(fiber.Map{"allowed_lateness": a.view.AllowedLateness().String(), "sources": ws})
}

func (a *API) bounces(c *fiber.Ctx) error {
	by := c.Query("by", "reason")
	if !slices.Contains(engine.BounceDims, by) {
		return Error(c, fiber.StatusBadRequest, fmt.Sprintf("parameter 'by': %q is not one of %s", by, strings.Join(engine.BounceDims, ", ")))
	}
	r, err := timeRange(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	var ref *engine.CampaignRef
	if c.Query("source") != "" || c.Query("campaign") != "" {
		cr, err := campaignRef(c)
		if err != nil {
			return Error(c, fiber.StatusBadRequest, err.Error()+" (give source and campaign, or neither for all campaigns)")
		}
		ref = &cr
	}
	groups, err := a.view.Bounces(ref, by, r)
	if err != nil {
		return a.viewError(c, err)
	}
	if wantsArrow(c) {
		return writeArrow(c, groupsRecord(groups))
	}
	return c.JSON(fiber.Map{"by": by, "groups": groups})
}

func (a *API) deadletters(c *fiber.Ctx) error {
	after, err := strconv.ParseUint(c.Query("after", "0"), 10, 64)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, "parameter 'after': not a dead-letter id")
	}
	limit, err := strconv.Atoi(c.Query("limit", "100"))
	if err != nil || limit < 1 || limit > 1000 {
		return Error(c, fiber.StatusBadRequest, "parameter 'limit': a number from 1 to 1000")
	}
	dls, err := a.dead.DeadLetters(after, limit)
	if err != nil {
		return a.viewError(c, err)
	}
	if dls == nil {
		dls = []storage.DeadLetter{}
	}
	return c.JSON(fiber.Map{"deadletters": dls})
}
