package query

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/gofiber/fiber/v2"

	"github.com/mailfunnel/mailfunnel/engine"
)

// optionalCampaign parses source and campaign (and account): both or
// neither, nil meaning all campaigns.
func optionalCampaign(c *fiber.Ctx) (*engine.CampaignRef, error) {
	if c.Query("source") == "" && c.Query("campaign") == "" && c.Query("account") == "" {
		return nil, nil
	}
	ref, err := campaignRef(c)
	if err != nil {
		return nil, fmt.Errorf("%w (give source and campaign, or neither for all campaigns)", err)
	}
	return &ref, nil
}

// domains answers GET /v1/domains: per recipient domain, the funnel's
// recipient counts, recipients per bounce class, and rates.
func (a *API) domains(c *fiber.Ctx) error {
	ref, err := optionalCampaign(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	r, err := timeRange(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	ds, err := a.view.Domains(ref, r)
	if err != nil {
		return a.viewError(c, err)
	}
	if wantsArrow(c) {
		return writeArrow(c, domainsRecord(ds))
	}
	return c.JSON(fiber.Map{"domains": ds})
}

// suppressions answers GET /v1/suppressions: suppressed addresses in
// address order, paged by an opaque cursor.
func (a *API) suppressions(c *fiber.Ctx) error {
	reason := c.Query("reason")
	if reason != "" && !slices.Contains(engine.SuppressionReasons, reason) {
		return Error(c, fiber.StatusBadRequest, fmt.Sprintf("parameter 'reason': %q is not one of %s", reason, strings.Join(engine.SuppressionReasons, ", ")))
	}
	limit, err := strconv.Atoi(c.Query("limit", "100"))
	if err != nil || limit < 1 || limit > 1000 {
		return Error(c, fiber.StatusBadRequest, "parameter 'limit': a number from 1 to 1000")
	}
	sps, next, err := a.view.Suppressions(reason, c.Query("after"), limit)
	if err != nil {
		return a.viewError(c, err)
	}
	if wantsArrow(c) {
		if next != "" {
			c.Set("X-Next-Cursor", next)
		}
		return writeArrow(c, suppressionsRecord(sps))
	}
	body := fiber.Map{"suppressions": sps}
	if next != "" {
		body["next"] = next
	}
	return c.JSON(body)
}

func recipientParam(c *fiber.Ctx) (string, error) {
	r, err := url.PathUnescape(c.Params("recipient"))
	if err != nil || strings.TrimSpace(r) == "" {
		return "", fmt.Errorf("path: %q is not an address", c.Params("recipient"))
	}
	return r, nil
}

// suppression answers GET /v1/suppressions/{recipient}.
func (a *API) suppression(c *fiber.Ctx) error {
	r, err := recipientParam(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	sp, err := a.view.Suppression(r)
	if err != nil {
		return a.viewError(c, err)
	}
	return c.JSON(sp)
}

// liftSuppression answers DELETE /v1/suppressions/{recipient}: the lift is
// committed before the answer.
func (a *API) liftSuppression(c *fiber.Ctx) error {
	r, err := recipientParam(c)
	if err != nil {
		return Error(c, fiber.StatusBadRequest, err.Error())
	}
	sp, seq, err := a.view.LiftSuppression(r)
	if err != nil {
		return a.viewError(c, err)
	}
	a.log.Info("suppression lifted", "recipient", sp.Recipient, "reason", sp.Reason, "seq", seq)
	return c.JSON(fiber.Map{"lifted": sp, "seq": seq})
}

// domainsRecord is one row per domain, rates left to the tool.
func domainsRecord(ds []engine.DomainStats) arrow.RecordBatch {
	names := []string{"sent", "delivered", "opened", "clicked", "bounced_hard", "bounced_soft", "bounced_undetermined",
		"soft_bounced", "hard_bounced", "undelivered", "complained", "unsubscribed"}
	fields := []arrow.Field{{Name: "domain", Type: arrow.BinaryTypes.String}}
	for _, n := range names {
		fields = append(fields, arrow.Field{Name: n, Type: arrow.PrimitiveTypes.Int64})
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	defer b.Release()
	for _, d := range ds {
		b.Field(0).(*array.StringBuilder).Append(d.Domain)
		for i, v := range []int64{d.Sent, d.Delivered, d.Opened, d.Clicked, d.Bounced.Hard, d.Bounced.Soft, d.Bounced.Undetermined,
			d.SoftBounced, d.HardBounced, d.Undelivered, d.Complained, d.Unsubscribed} {
			b.Field(i + 1).(*array.Int64Builder).Append(v)
		}
	}
	return b.NewRecordBatch()
}

// suppressionsRecord flattens suppressions and their causing events.
func suppressionsRecord(sps []engine.Suppression) arrow.RecordBatch {
	str := arrow.BinaryTypes.String
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "recipient", Type: str}, {Name: "reason", Type: str}, {Name: "suppressed_at", Type: tsUTC},
		{Name: "seq", Type: arrow.PrimitiveTypes.Int64}, {Name: "source", Type: str}, {Name: "account", Type: str},
		{Name: "campaign", Type: str}, {Name: "provider_event", Type: str}, {Name: "type", Type: str},
		{Name: "bounce_class", Type: str}, {Name: "bounce_reason", Type: str},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, sp := range sps {
		e := sp.Event
		for i, v := range []string{sp.Recipient, sp.Reason} {
			b.Field(i).(*array.StringBuilder).Append(v)
		}
		b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(sp.SuppressedAt.UnixMicro()))
		b.Field(3).(*array.Int64Builder).Append(int64(e.Seq))
		for i, v := range []string{e.Source, e.Account, e.Campaign, e.ProviderEvent, e.Type, e.BounceClass, e.BounceReason} {
			b.Field(4 + i).(*array.StringBuilder).Append(v)
		}
	}
	return b.NewRecordBatch()
}
