// Package sendpulse turns SendPulse webhook bodies into canonical events.
//
// SendPulse posts a JSON array of events (a single object is accepted too)
// and uses two dialects at one endpoint. Names map as follows; any other
// name (list events such as new_emails or delete, task_status_update, a
// future event) becomes event.Other with the name kept in ProviderEvent,
// because the contract never rejects an event for its name.
//
//	SMTP (transactional)     bulk email service       type
//	delivered                delivered                delivered
//	undelivered                                       undelivered
//	opened                   open                     opened
//	clicked                  redirect                 clicked
//	unsubscribed             unsubscribe              unsubscribed
//	spam_by_user             spam                     complained
//	soft_bounces             soft_bounces             soft_bounce
//	hard_bounces             hard_bounces             hard_bounce
//	resubscribed                                      subscribed
//
// Fields: Recipient is "recipient", or "email" when recipient is missing,
// null or empty (the bounce events and the bulk service send email).
// Campaign is "task_id", else "campaign_id", else the subject, so that
// transactional mail without a task still groups by what was sent. Account
// is the source name: SendPulse bodies carry no account. EventTime is
// "timestamp" in Unix seconds, a number or a numeric string, with an
// optional fraction; missing, null or "" means the receive time is used and
// TimeFromReceive is set. SMTPCode is "smtp_server_response_code", a number
// or a numeric string ("" and null mean absent); SMTPStatus is
// "smtp_server_response_subcode"; SMTPResponse is "smtp_server_response"
// with surrounding white space trimmed (SendPulse prefixes a space). URL is
// "url", else "link_url" (the bulk service's redirect), else "link".
// MessageID, Sender and Subject are copied. Numbers in text fields keep
// their literal ("message_id": 1149317311 becomes "1149317311"). Other
// members (book_id, open_device, variables, ...) are ignored.
//
// Quirks handled: a comma before a closing ']' or '}', as SendPulse's own
// example shows, is blanked before parsing (only after a value and outside
// strings, so "[,]" and commas inside strings are untouched); codes and ids
// as numbers or strings; email in place of recipient; timestamps as
// strings, with fractions ("1490954061.5"), or in exponent form.
//
// Rejected, as an *ingest.ElementError naming the element and field: an
// element that is not an object; a missing or empty event name; a known
// event without a recipient (an event without an address cannot count in a
// funnel; unknown events may lack one, task_status_update does); a
// timestamp that is not Unix seconds between 1970 and 9999 (a millisecond
// timestamp lands beyond 9999 and is rejected rather than misdated); a code
// that is not an integer 0-999; a field of a kept kind (string or number)
// holding an object, array or boolean. A body that is not JSON, or is JSON
// but neither array nor object, wraps ingest.ErrSyntax with the byte offset
// where it fails. More than MaxElements elements is an ElementError at
// index MaxElements wrapping ErrTooManyElements. An empty array yields no
// events and no error.
//
// JSON is parsed by fastjson, which is lenient where encoding/json is not
// (NaN, invalid escapes inside strings); numbers in the fields that are kept
// are checked against the JSON grammar. Validating whole bodies strictly
// would cost about a fifth of the parse time and reject bodies whose only
// flaw lies in a member the mapping ignores.
//
// Parsing uses a pooled fastjson parser and one pass over each object's
// members; strings equal to the previous event's (subject, sender, task) are
// shared instead of copied, so a batch costs about four allocations per
// event. Events never alias the body or the parser's memory.
package sendpulse
