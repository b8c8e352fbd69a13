package bounce_test

import (
	"testing"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
)

// BenchmarkClassify classifies the corpus mix, one reply per iteration.
//
//	go test ./engine/bounce/ -run='^$' -bench=BenchmarkClassify -benchmem -count=10 -cpu=1
func BenchmarkClassify(b *testing.B) {
	cases := loadCorpus(b)
	inputs := make([]bounce.Input, len(cases))
	var bytes int
	for i, c := range cases {
		inputs[i] = c.input()
		bytes += len(c.Text)
	}
	b.SetBytes(int64(bytes / len(inputs)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		bounce.Classify(inputs[n%len(inputs)])
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "classifications/s")
}

// BenchmarkNormalize measures the normaliser alone on the corpus mix.
//
//	go test ./engine/bounce/ -run='^$' -bench=BenchmarkNormalize -benchmem -count=10 -cpu=1
func BenchmarkNormalize(b *testing.B) {
	cases := loadCorpus(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		bounce.Normalize(cases[n%len(cases)].Text)
		n++
	}
}
