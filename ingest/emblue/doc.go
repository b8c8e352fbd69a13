// Package emblue turns emBlue activity webhook bodies into canonical events.
//
// emBlue posts one JSON object per activity, as a burst of parallel
// requests; an array of such objects is accepted too. Mapping:
//
//	activity_id   emBlue name     type
//	1             envíos          sent
//	2             aperturas       opened
//	3             clicks          clicked
//	4             suscriptos      subscribed
//	5             desuscriptos    unsubscribed
//	6             denunciantes    complained
//	other         -               other
//
// activity_id may be a number or a numeric string; leading zeros are
// ignored, and ProviderEvent is the canonical id ("1" for 1, "1" and "01").
// Any other id (7, "rebote") becomes event.Other with the id kept verbatim
// in ProviderEvent, because the contract never rejects an event for its
// name. Account is account_id, Campaign is action_id, SendType is type_id
// (1 simple send, 2 A/B test, 3 trigger, 4 SendEmail, 5 SMS, 6 challenge),
// each as text, numbers keeping their literal. An activity without
// account_id gets the source name as its account, as SendPulse events do,
// so that it still lands in a funnel. Recipient is "email", URL is "url".
//
// Timestamps are "yyyy-MM-dd HH:mm:ss.ffffff" (the documentation's
// "hh" is read as 24-hour, as its own example shows) in the source's time
// zone (ingest.Source.Location, nil meaning UTC), with a fraction of 0 to
// 9 digits or none. 'T' in place of the space and a trailing "Z" or
// "±hh:mm" (RFC 3339) are accepted too; an explicit offset wins over the
// source's zone. Wall times in a daylight-saving gap or overlap resolve as
// time.Date does. Stored times are UTC, truncated to microseconds. A
// missing, null or empty timestamp means the receive time is used and
// TimeFromReceive is set.
//
// Rejected, as an *ingest.ElementError naming the element and field: an
// element that is not an object; a missing or empty activity_id; a known
// activity without an email (it could not count in a funnel); a timestamp
// in another format (Unix numbers included: emBlue documents the layout),
// an impossible date, or one outside 1970-9999; an id or text field holding
// an object, array or boolean. A body that is not JSON (including the
// typographic quotes of emBlue's documentation, or several objects in one
// body), or is neither object nor array, wraps ingest.ErrSyntax with the
// byte offset where it fails. More than MaxElements elements is an
// ElementError at index MaxElements wrapping ErrTooManyElements. An empty
// array yields no events and no error.
//
// JSON is parsed by fastjson, which is lenient where encoding/json is not
// (NaN, invalid escapes inside strings); numbers in the fields that are kept
// are checked against the JSON grammar. Validating whole bodies strictly
// would cost about a fifth of the parse time and reject bodies whose only
// flaw lies in a member the mapping ignores.
package emblue
