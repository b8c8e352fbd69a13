package sendpulse_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mailfunnel/mailfunnel/ingest/ingesttest"
	"github.com/mailfunnel/mailfunnel/ingest/sendpulse"
)

// batch returns a SendPulse body of n events as the SMTP service sends them:
// one send's subject and sender, distinct recipients, a mix of event types
// with codes as strings and numbers.
func batch(n int) []byte {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		ts := 1490953933 + i
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, `  {"smtp_server_response_code": "250", "smtp_server_response_subcode": "", "sender": "news@shop.example", "smtp_server_response": "250 2.0.0 OK queued as %d", "timestamp": %d, "message_id": %d, "recipient": "customer.%d@mail.example", "event": "delivered", "subject": "Black Friday: 40%% off everything"}`, 1000+i, ts, 1149317311+i, i)
		case 1:
			fmt.Fprintf(&b, `  {"event": "opened", "timestamp": %d, "message_id": %d, "recipient": "customer.%d@mail.example", "sender": "news@shop.example", "subject": "Black Friday: 40%% off everything"}`, ts, 1149317311+i, i)
		case 2:
			fmt.Fprintf(&b, `  {"event": "clicked", "timestamp": %d, "message_id": %d, "recipient": "customer.%d@mail.example", "sender": "news@shop.example", "subject": "Black Friday: 40%% off everything", "url": "https://shop.example/sale?utm_campaign=bf"}`, ts, 1149317311+i, i)
		case 3:
			fmt.Fprintf(&b, `  {"smtp_server_response_code": 550, "smtp_server_response_subcode": "5.1.1", "task_id": 17076325, "smtp_server_response": " customer.%d@mail.example MX: mx.mail.example RESP: 5.1.1 User unknown", "timestamp": %d, "event": "hard_bounces", "email": "customer.%d@mail.example"}`, i, ts, i)
		case 4:
			fmt.Fprintf(&b, `  {"event": "delivered", "timestamp": "%d", "task_id": "17076325", "email": "customer.%d@mail.example"}`, ts, i)
		}
	}
	b.WriteString(",\n]\n") // SendPulse's trailing comma, so the benchmark pays for it
	return b.Bytes()
}

// BenchmarkParse measures Parse on a full SendPulse batch (500 events, the
// most SendPulse sends at once).
//
//	go test ./ingest/sendpulse -run '^$' -bench '^BenchmarkParse$' -benchmem -count=10
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{500} {
		body := batch(n)
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			a := sendpulse.New()
			src := ingesttest.Source(a)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				evs, err := a.Parse(src, body, ingesttest.Recv)
				if err != nil || len(evs) != n {
					b.Fatalf("parse: %d events, %v", len(evs), err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
