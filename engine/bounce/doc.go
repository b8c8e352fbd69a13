// Package bounce classifies email bounces: it turns an SMTP reply code, an
// enhanced status code and the server's reply text into a class (hard, soft
// or undetermined) and one of 27 reasons, following the taxonomy and rules in
// BOUNCES.md (../shared/BOUNCES.md from the project root).
//
// # Contract
//
// Classify is pure: it does no I/O, keeps no state between calls and reads
// only tables built once at package initialisation, so it is safe for
// concurrent use and gives the same Result for the same Input every time.
// The engine calls it for every bounce event; `mailfunnel classify` calls it
// through ClassifyLines.
//
// # Decision order
//
//  1. Normalize the text: lowercase, fold diacritics and quotes, collapse
//     white space, join multi-line replies, drop relaying host names and
//     provider boilerplate that names a cause it is not reporting.
//  2. Take the status from the field, or from the text when the field is
//     absent or synthesised (x.0.0, x.1.0); take the reply code from the
//     field or from the text (ExtractStatus, ExtractCode).
//  3. Provider code tables (i.ua, Orange, La Poste, Outlook.com, Yahoo,
//     Spectrum, Cox, GoDaddy, Comcast): precise, so they go first.
//  4. Text rules by tier: ESP suppression; cause-specific phrases
//     (greylisting, authentication, TLS, PTR, block lists, reputation,
//     quota, rate limits, virus, size); address-level phrases (sender,
//     disabled, unknown user, moved, unknown host); policy and filters;
//     transport and system; weak phrases last. The first match decides,
//     whatever the codes say: "550 5.1.1 mailbox full" is mailbox_full.
//  5. The enhanced status table, then the reply code table.
//  6. Otherwise unknown.
//
// The class follows from the reason (§2): user_unknown, host_unknown,
// has_moved and suppressed are always hard; mailbox_disabled and
// relay_denied are soft when the reply is 4xx or the text says it is
// temporary and hard otherwise; unknown is soft when 4xx and undetermined
// otherwise; every other reason is soft, because a block, a spam verdict or
// a failed authentication is about the sender, not the address. The class
// digit is the reply code's when there is one (so "421 5.7.32" is 4xx).
//
// The provider's label (Input.Label) is weak evidence and never overrides a
// reason or a code; see classOf for the two cases where it fills a gap.
//
// # Matching
//
// All phrases of all rules are compiled into one Aho-Corasick automaton, so
// a reply is scanned once whatever the number of phrases; the rules then
// look the matches up in decision order. Adding a phrase to rules.go costs
// nothing per call.
package bounce
