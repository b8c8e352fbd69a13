package bounce

// Provider code tables (BOUNCES.md §6). A provider's own error code is more
// precise than any phrase around it ("Mailbox over quota" next to 5.1.0, or
// "sender rejected" next to Cox's AUP#CDRBL), so these run before the text
// rules. Each entry is found by the automaton; decide reads what follows the
// marker and returns the reason and a short label, or "" to pass.

type providerRule struct {
	marker string
	name   string
	decide func(rest string) (reason, label string)
}

func fixed(reason, label string) func(string) (string, string) {
	return func(string) (string, string) { return reason, label }
}

// leadingInt reads the decimal number at the start of s (at most 5 digits).
func leadingInt(s string) (int, bool) {
	n, i := 0, 0
	for i < len(s) && i < 5 && isDigit(s[i]) {
		n = n*10 + int(s[i]-'0')
		i++
	}
	return n, i > 0
}

// iuaReasons is i.ua's error page table (sisimai/go-sisimai rhost/for-iua.go).
var iuaReasons = map[int]string{
	1: "relay_denied", 2: "user_unknown", 3: "mailbox_disabled", 4: "mailbox_full", 5: "rate_limited",
	6: "relay_denied", 7: "blocked", 8: "sender_rejected", 9: "blocked", 10: "recipient_filtered",
}

var orangeReasons = map[int]string{
	416: "user_unknown", 417: "mailbox_full", 506: "spam_content", 405: "sender_rejected", 102: "blocked",
	999: "system_error",
}

var laPosteReasons = map[int]string{416: "user_unknown", 426: "mailbox_disabled"}

// underscoreCode reads Orange/Wanadoo "OFR_416", "OFR004_405", "OFR006_102" and
// La Poste "LPN007_416": optional digits, "_", three digits.
func underscoreCode(rest string) (int, bool) {
	i := 0
	for i < len(rest) && isDigit(rest[i]) {
		i++
	}
	if i >= len(rest) || rest[i] != '_' {
		return 0, false
	}
	return leadingInt(rest[i+1:])
}

func spectrumReason(n int) string {
	switch {
	case n == 1000:
		return "blocked"
	case n >= 1010 && n <= 1080:
		return "sender_rejected"
	case n == 1090:
		return "system_error"
	case n >= 1100 && n <= 1150:
		return "require_ptr"
	case n >= 1160 && n <= 1190:
		return "policy_rejected"
	case n >= 1200 && n <= 1250:
		return "blocked"
	case n == 1260:
		return "network_error"
	case n >= 1300 && n <= 1490:
		return "rate_limited"
	case n == 1500 || n == 1520:
		return "sender_rejected"
	case n == 1530:
		return "message_too_large"
	case n >= 1540 && n <= 1580:
		return "rate_limited"
	}
	return ""
}

var providerRules = []providerRule{
	{marker: "mail.i.ua/err/", name: "i.ua", decide: func(rest string) (string, string) {
		n, ok := leadingInt(rest)
		if !ok {
			return "", ""
		}
		return iuaReasons[n], "err/" + itoa(n)
	}},
	{marker: `\bofr`, name: "orange", decide: func(rest string) (string, string) {
		n, ok := underscoreCode(rest)
		if !ok {
			return "", ""
		}
		return orangeReasons[n], "ofr " + itoa(n)
	}},
	{marker: `\blpn`, name: "la poste", decide: func(rest string) (string, string) {
		n, ok := underscoreCode(rest)
		if !ok {
			return "", ""
		}
		return laPosteReasons[n], "lpn " + itoa(n)
	}},
	{marker: "aup#", name: "spectrum/cox", decide: func(rest string) (string, string) {
		i := 0
		for i < len(rest) && (rest[i] >= 'a' && rest[i] <= 'z' || rest[i] == '-') {
			i++
		}
		if n, ok := leadingInt(rest[i:]); ok && n >= 1000 {
			return spectrumReason(n), "aup#" + itoa(n)
		}
		if i >= 2 && rest[i-2:i] == "bl" || i >= 5 && rest[:5] == "cdrbl" {
			return "blocked", "aup#" + rest[:i]
		}
		return "", ""
	}},
	{marker: `\bs3150\b`, name: "outlook", decide: fixed("blocked", "s3150")},
	{marker: `\bs3140\b`, name: "outlook", decide: fixed("blocked", "s3140")},
	{marker: `\bsc-00\d`, name: "outlook", decide: fixed("blocked", "sc-00x")},
	{marker: `\bou-00\d`, name: "outlook", decide: fixed("blocked", "ou-00x")},
	{marker: `\bdy-00\d`, name: "outlook", decide: fixed("blocked", "dy-00x")},
	{marker: `\brp-00\d`, name: "outlook", decide: fixed("rate_limited", "rp-00x")},
	{marker: "[tss04]", name: "yahoo", decide: fixed("bad_reputation", "tss04")},
	{marker: "[tss09]", name: "yahoo", decide: fixed("bad_reputation", "tss09")},
	{marker: "[ts0", name: "yahoo", decide: fixed("bad_reputation", "ts0x")},
	{marker: "[bl2", name: "yahoo", decide: fixed("blocked", "bl2x")},
	{marker: "[ph0", name: "yahoo", decide: fixed("spam_content", "ph0x")},
	{marker: "554.30", name: "yahoo", decide: fixed("mailbox_disabled", "554.30")},
	{marker: "dd this user doesn't have", name: "yahoo", decide: fixed("user_unknown", "dd no account")},
	{marker: `\bib506\b`, name: "godaddy", decide: fixed("sender_rejected", "ib506")},
	{marker: `\bib508\b`, name: "godaddy", decide: fixed("auth_failure", "ib508")},
	{marker: `\bib607\b`, name: "godaddy", decide: fixed("rate_limited", "ib607")},
	{marker: `#bl0\d`, name: "comcast", decide: fixed("blocked", "bl")},
	{marker: `#dm0\d`, name: "comcast", decide: fixed("auth_failure", "dm")},
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [8]byte
	i := len(b)
	for n > 0 && i > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
