package export

import (
	"sync"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdCodec is parquet-go's zstd codec with one more encoder option:
// literals are entropy coded even in blocks where the encoder found no
// matches. At zstd.SpeedFastest the encoder otherwise stores such blocks
// raw, and the PLAIN timestamp pages (8 bytes a value, the high bytes
// shared, no 4-byte matches) then take 8 bytes a row instead of about 4.
type zstdCodec struct {
	level kzstd.EncoderLevel
	dec   zstd.Codec
	encs  sync.Pool // *kzstd.Encoder
}

var _ compress.Codec = (*zstdCodec)(nil)

func newZstdCodec(level zstd.Level) *zstdCodec {
	return &zstdCodec{level: level}
}

func (c *zstdCodec) String() string                            { return "ZSTD" }
func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encs.Get().(*kzstd.Encoder)
	if e == nil {
		var err error
		e, err = kzstd.NewWriter(nil,
			kzstd.WithEncoderConcurrency(1),
			kzstd.WithEncoderLevel(c.level),
			kzstd.WithAllLitEntropyCompression(true),
			kzstd.WithZeroFrames(true),
			kzstd.WithEncoderCRC(false),
		)
		if err != nil {
			return nil, err
		}
	}
	defer c.encs.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) { return c.dec.Decode(dst, src) }
