package export

// SchemaVersion is the version of the exported Parquet schemas. It is written
// as the key-value metadata entry SchemaVersionKey of every file and as the
// schema_version column of every row. Schema changes are additive only (new
// columns at the end, never a renamed, retyped or removed column), and each
// one increments the version.
const SchemaVersion = 1

// SchemaVersionKey is the Parquet key-value metadata key of SchemaVersion.
const SchemaVersionKey = "mailfunnel.schema_version"

// EventRow is one exported event: the contract's event model as flat
// columns. The tags pin every physical detail that readers care about:
//
//   - times are INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true), never
//     nanoseconds (Spark rejects them) and never INT96;
//   - integers are signed (seq INT64, smtp_code INT32);
//   - strings are BYTE_ARRAY with the STRING (UTF-8) logical type;
//   - every column names its encoding, PLAIN or RLE_DICTIONARY, because
//     parquet-go's default for untagged strings is DELTA_LENGTH_BYTE_ARRAY,
//     which older Spark readers reject. Dictionary encoding is used for the
//     low-cardinality columns, PLAIN for per-event values (seq, times,
//     message ids, recipients, response texts).
//
// Compression (zstd) is set for the whole file by the writer.
type EventRow struct {
	Seq             int64  `parquet:"seq,plain"`
	Source          string `parquet:"source,dict"`
	Provider        string `parquet:"provider,dict"`
	ProviderEvent   string `parquet:"provider_event,dict"`
	Account         string `parquet:"account,dict"`
	Campaign        string `parquet:"campaign,dict"`
	MessageID       string `parquet:"message_id,plain"`
	Recipient       string `parquet:"recipient,plain"`
	RecipientDomain string `parquet:"recipient_domain,dict"`
	Type            string `parquet:"type,dict"`
	EventTime       int64  `parquet:"event_time,plain,timestamp(microsecond:utc)"`
	ReceivedTime    int64  `parquet:"received_time,plain,timestamp(microsecond:utc)"`
	SMTPCode        int32  `parquet:"smtp_code,plain"`
	SMTPStatus      string `parquet:"smtp_status,dict"`
	SMTPResponse    string `parquet:"smtp_response,plain"`
	BounceClass     string `parquet:"bounce_class,dict"`
	BounceReason    string `parquet:"bounce_reason,dict"`
	URL             string `parquet:"url,dict"`
	Subject         string `parquet:"subject,dict"`
	Sender          string `parquet:"sender,dict"`
	SendType        string `parquet:"send_type,dict"`
	SchemaVersion   int32  `parquet:"schema_version,dict"`
}

// WindowRow is one event-time window of one campaign and event type, from
// the engine's time series (windows of Config.Window, aligned to the Unix
// epoch).
type WindowRow struct {
	Source        string `parquet:"source,dict"`
	Account       string `parquet:"account,dict"`
	Campaign      string `parquet:"campaign,dict"`
	WindowStart   int64  `parquet:"window_start,plain,timestamp(microsecond:utc)"`
	WindowSeconds int64  `parquet:"window_seconds,dict"`
	Type          string `parquet:"type,dict"`
	Events        int64  `parquet:"events,plain"`
	AsOfSeq       int64  `parquet:"as_of_seq,dict"`
	SchemaVersion int32  `parquet:"schema_version,dict"`
}

// FunnelRow is one stage or outcome of one campaign's funnel, long format
// (one row per stage) so that the schema stays flat and a new stage is a new
// row, not a new column.
type FunnelRow struct {
	Source        string `parquet:"source,dict"`
	Account       string `parquet:"account,dict"`
	Campaign      string `parquet:"campaign,dict"`
	Kind          string `parquet:"kind,dict"` // "stage" or "outcome"
	Name          string `parquet:"name,dict"`
	Recipients    int64  `parquet:"recipients,plain"`
	Events        int64  `parquet:"events,plain"`
	FirstEvent    int64  `parquet:"first_event,plain,timestamp(microsecond:utc)"`
	LastEvent     int64  `parquet:"last_event,plain,timestamp(microsecond:utc)"`
	AsOfSeq       int64  `parquet:"as_of_seq,dict"`
	SchemaVersion int32  `parquet:"schema_version,dict"`
}
