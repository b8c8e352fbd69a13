package emblue_test

import (
	"testing"
	"time"

	"github.com/mailfunnel/mailfunnel/ingest/emblue"
	"github.com/mailfunnel/mailfunnel/ingest/ingesttest"
)

// BenchmarkParse measures Parse on the body emBlue posts: one activity per
// request, here a click in the Buenos Aires time zone.
//
//	go test ./ingest/emblue -run '^$' -bench '^BenchmarkParse$' -benchmem -count=10
func BenchmarkParse(b *testing.B) {
	body := []byte(`{"account_id": 1001, "action_id": 555001, "type_id": 1, "activity_id": 3, "email": "cliente@correo.com.ar", "timestamp": "2016-10-05 14:16:00.500000", "url": "https://tienda.example/oferta?utm_source=emblue"}`)
	b.Run("single", func(b *testing.B) {
		a := emblue.New()
		src := ingesttest.Source(a)
		loc, err := time.LoadLocation("America/Argentina/Buenos_Aires")
		if err != nil {
			b.Fatal(err)
		}
		src.Location = loc
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			evs, err := a.Parse(src, body, ingesttest.Recv)
			if err != nil || len(evs) != 1 {
				b.Fatalf("parse: %d events, %v", len(evs), err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
