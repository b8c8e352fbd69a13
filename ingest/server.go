package ingest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/internal/secret"
	"github.com/mailfunnel/mailfunnel/storage"
)

// Appender stores events durably. Append returns only after the events are
// on disk, sets Seq on the stored ones, and reports duplicates. It does not
// retain the slice. storage.Log implements it. Errors wrapping
// storage.ErrOverloaded mean "try again later".
type Appender interface {
	Append(ctx context.Context, events []event.Event) (storage.Result, error)
}

// DeadLetters keeps rejected bodies. storage.Log implements it.
type DeadLetters interface {
	PutDeadLetter(storage.DeadLetter) (uint64, error)
}

// Config configures a Server. Zero values mean the defaults.
type Config struct {
	// Token is the ingest secret. Required.
	Token string
	// MaxInFlight bounds requests in the append path at once. Default 2048.
	MaxInFlight int
	// InFlightWait is how long a request waits for a slot before 503.
	// Default 1s.
	InFlightWait time.Duration
	// AppendTimeout bounds one append (queue wait plus commit). Default 30s.
	AppendTimeout time.Duration
	// Locations maps a source name to the time zone of its timestamps that
	// carry none (emBlue's). Sources not listed use UTC.
	Locations map[string]*time.Location
	// Overloaded, if set, is asked before each append; a non-nil error
	// answers 503 (used for the engine-lag backpressure).
	Overloaded func() error
	// RetryAfter is the Retry-After sent with 503. Default 1s.
	RetryAfter time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives the ingest metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Token == "" {
		return errors.New("ingest config: Token is required")
	}
	if c.MaxInFlight < 0 {
		return errors.New("ingest config: MaxInFlight must not be negative")
	}
	return nil
}

// Server handles webhook requests.
type Server struct {
	cfg      Config
	adapters map[string]Adapter
	app      Appender
	dead     DeadLetters
	log      *slog.Logger
	slots    chan struct{}
	now      func() time.Time
	m        metrics
	// counted holds each adapter's accepted and duplicate counters, looked
	// up once: a label lookup per request showed in the profile of single
	// events.
	counted map[string]eventCounters
}

type eventCounters struct{ accepted, duplicate prometheus.Counter }

type metrics struct {
	events   *prometheus.CounterVec // provider, result
	requests *prometheus.CounterVec // provider, code
}

// NewServer returns a server for the given adapters.
func NewServer(cfg Config, app Appender, dead DeadLetters, adapters ...Adapter) (*Server, error) {
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 2048
	}
	if cfg.InFlightWait == 0 {
		cfg.InFlightWait = time.Second
	}
	if cfg.AppendTimeout == 0 {
		cfg.AppendTimeout = 30 * time.Second
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, adapters: map[string]Adapter{}, app: app, dead: dead, log: cfg.Logger,
		slots: make(chan struct{}, cfg.MaxInFlight), now: time.Now}
	for _, a := range adapters {
		s.adapters[a.Provider()] = a
	}
	s.m = metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailfunnel_ingest_events_total",
			Help: "Webhook events by provider and result (accepted, duplicate, rejected).",
		}, []string{"provider", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailfunnel_ingest_requests_total",
			Help: "Webhook requests by provider and HTTP status.",
		}, []string{"provider", "code"}),
	}
	s.counted = map[string]eventCounters{}
	for p := range s.adapters {
		s.counted[p] = eventCounters{s.m.events.WithLabelValues(p, "accepted"), s.m.events.WithLabelValues(p, "duplicate")}
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.m.events, s.m.requests} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register ingest metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Mount adds the webhook routes to r.
func (s *Server) Mount(r fiber.Router) {
	r.Post("/v1/webhooks/:provider", s.handle)
	r.Post("/v1/webhooks/:provider/:source", s.handle)
}

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Authorized reports whether c presents the token in one of the three
// accepted ways. Comparison is constant-time.
func Authorized(c *fiber.Ctx, token string) bool {
	eq := func(s string) bool { return secret.Equal(s, token) }
	h := c.Get(fiber.HeaderAuthorization)
	if v, ok := cutPrefixFold(h, "Bearer "); ok && eq(strings.TrimSpace(v)) {
		return true
	}
	if v, ok := cutPrefixFold(h, "Basic "); ok {
		if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v)); err == nil {
			if _, pw, ok := strings.Cut(string(raw), ":"); ok && eq(pw) {
				return true
			}
		}
	}
	return eq(c.Query("token"))
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// errorBody is the contract's error shape; Index is set for element errors.
type errorBody struct {
	Error        string `json:"error"`
	Index        *int   `json:"index,omitempty"`
	Field        string `json:"field,omitempty"`
	DeadLetterID uint64 `json:"dead_letter_id,omitempty"`
}

func (s *Server) handle(c *fiber.Ctx) error {
	provider := c.Params("provider")
	code, err := s.serve(c, provider)
	s.m.requests.WithLabelValues(metricProvider(s, provider), strconv.Itoa(code)).Inc()
	return err
}

// metricProvider returns the label for provider p: the adapter's own name,
// or "unknown" for a name no adapter has, which keeps label cardinality
// bounded. Never p itself: Fiber's route parameters alias the request
// buffer, which the next request on the connection overwrites, and a
// label value is kept for the life of the process ("sendpulse" became
// "embluelse" in /metrics, which then failed as a whole).
func metricProvider(s *Server, p string) string {
	if a, ok := s.adapters[p]; ok {
		return a.Provider()
	}
	return "unknown"
}

func (s *Server) serve(c *fiber.Ctx, provider string) (int, error) {
	if !Authorized(c, s.cfg.Token) {
		c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="mailfunnel ingest"`)
		return fiber.StatusUnauthorized, c.Status(fiber.StatusUnauthorized).JSON(errorBody{
			Error: "missing or wrong ingest token: send it as 'Authorization: Bearer TOKEN', ?token=TOKEN or the basic-auth password"})
	}
	a, ok := s.adapters[provider]
	if !ok {
		return fiber.StatusNotFound, c.Status(fiber.StatusNotFound).JSON(errorBody{
			Error: fmt.Sprintf("unknown provider %q: known providers are %s", provider, strings.Join(s.providers(), ", "))})
	}
	// A copy: Fiber's parameters alias the request buffer, and the events
	// carry the source into the log's queue, which may still read them
	// after this handler gave up waiting (503) and Fiber reused the buffer.
	source := strings.Clone(c.Params("source", provider))
	if !sourceName.MatchString(source) {
		return fiber.StatusBadRequest, c.Status(fiber.StatusBadRequest).JSON(errorBody{
			Error: fmt.Sprintf("invalid source name %q: use 1-64 letters, digits, '_', '.' or '-'", source)})
	}

	// Bound the work in flight before parsing: parsing is the expensive part.
	select {
	case s.slots <- struct{}{}:
	default:
		t := time.NewTimer(s.cfg.InFlightWait)
		select {
		case s.slots <- struct{}{}:
			t.Stop()
		case <-t.C:
			return s.unavailable(c, "too many requests in flight")
		}
	}
	defer func() { <-s.slots }()
	if s.cfg.Overloaded != nil {
		if err := s.cfg.Overloaded(); err != nil {
			return s.unavailable(c, err.Error())
		}
	}

	recv := s.now().UTC().Truncate(time.Microsecond)
	src := Source{Provider: a.Provider(), Name: source, Location: s.cfg.Locations[source]}
	body := c.Body()
	events, err := a.Parse(src, body, recv)
	if err != nil {
		return s.reject(c, provider, source, body, recv, err)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.AppendTimeout)
	defer cancel()
	res, err := s.app.Append(ctx, events)
	if err != nil {
		if errors.Is(err, storage.ErrOverloaded) || errors.Is(err, context.DeadlineExceeded) {
			return s.unavailable(c, "the event log is busy")
		}
		if errors.Is(err, storage.ErrTooLarge) {
			return fiber.StatusRequestEntityTooLarge, c.Status(fiber.StatusRequestEntityTooLarge).JSON(errorBody{Error: err.Error()})
		}
		s.log.Error("append events", "provider", provider, "source", source, "err", err)
		return fiber.StatusInternalServerError, c.Status(fiber.StatusInternalServerError).JSON(errorBody{
			Error: "internal error storing events: nothing was acknowledged, please redeliver"})
	}
	counted := s.counted[a.Provider()]
	counted.accepted.Add(float64(res.Accepted))
	counted.duplicate.Add(float64(res.Duplicates))
	// What c.JSON of {accepted, duplicates} writes, without reflection
	// over a map for every webhook.
	b := make([]byte, 0, 48)
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(res.Accepted), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(res.Duplicates), 10)
	b = append(b, '}')
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return fiber.StatusOK, c.Send(b)
}

func (s *Server) unavailable(c *fiber.Ctx, why string) (int, error) {
	c.Set(fiber.HeaderRetryAfter, fmt.Sprint(int(max(1, s.cfg.RetryAfter.Seconds()))))
	return fiber.StatusServiceUnavailable, c.Status(fiber.StatusServiceUnavailable).JSON(errorBody{
		Error: "overloaded: " + why + "; retry after the Retry-After delay"})
}

// reject stores the body as a dead letter and answers 400 naming the
// problem. If even the dead letter cannot be stored, the answer is 500 so
// that the provider redelivers: a 400 would tell it to drop the body.
func (s *Server) reject(c *fiber.Ctx, provider, source string, body []byte, recv time.Time, perr error) (int, error) {
	s.m.events.WithLabelValues(metricProvider(s, provider), "rejected").Inc()
	eb := errorBody{Error: perr.Error()}
	var ee *ElementError
	if errors.As(perr, &ee) {
		idx := ee.Index
		eb.Index = &idx
		eb.Field = ee.Field
	}
	id, err := s.dead.PutDeadLetter(storage.DeadLetter{
		Received: recv, Provider: provider, Source: source, Error: perr.Error(), Body: string(body),
	})
	if err != nil {
		s.log.Error("store dead letter", "provider", provider, "source", source, "err", err)
		return fiber.StatusInternalServerError, c.Status(fiber.StatusInternalServerError).JSON(errorBody{
			Error: "body rejected (" + perr.Error() + ") and could not be kept as a dead letter; please redeliver"})
	}
	eb.DeadLetterID = id
	return fiber.StatusBadRequest, c.Status(fiber.StatusBadRequest).JSON(eb)
}

func (s *Server) providers() []string {
	return slices.Sorted(maps.Keys(s.adapters))
}
