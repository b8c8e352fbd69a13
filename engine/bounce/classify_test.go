package bounce_test

import (
	"testing"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
)

// TestClassify covers the rules of BOUNCES.md that the corpus exercises
// thinly: class rules (§2), codes that contradict the text, wrappers,
// multi-line replies, labels, and replies from servers and languages that
// are not in the corpus.
func TestClassify(t *testing.T) {
	cases := []struct {
		name   string
		in     bounce.Input
		class  bounce.Class
		reason string
		status string // checked when not empty
		code   int    // checked when not zero
	}{
		// §2 class rules.
		{"user unknown with 4xx is still hard", bounce.Input{Code: 452, Status: "4.1.1", Text: "452 4.1.1 <a@b.example>: user unknown"}, bounce.Hard, "user_unknown", "4.1.1", 452},
		{"mailbox full with 5.1.1 is soft", bounce.Input{Code: 550, Status: "5.1.1", Text: "550 5.1.1 Mailbox full"}, bounce.Soft, "mailbox_full", "5.1.1", 550},
		{"disabled, 5xx is hard", bounce.Input{Code: 550, Text: "550 5.2.1 account disabled"}, bounce.Hard, "mailbox_disabled", "5.2.1", 550},
		{"disabled, 4xx is soft", bounce.Input{Code: 450, Text: "450 4.2.1 account disabled"}, bounce.Soft, "mailbox_disabled", "", 0},
		{"disabled, 421 with 5.x status: reply code wins", bounce.Input{Code: 421, Status: "5.2.1", Text: "mailbox disabled"}, bounce.Soft, "mailbox_disabled", "", 0},
		{"disabled, text says temporary", bounce.Input{Code: 550, Text: "550 mailbox temporarily locked, try again later"}, bounce.Soft, "mailbox_disabled", "", 0},
		{"disabled, no codes at all is hard", bounce.Input{Text: "This account has been disabled"}, bounce.Hard, "mailbox_disabled", "", 0},
		{"relay denied 5xx hard", bounce.Input{Text: "554 5.7.1 <a@b.example>: Relay access denied"}, bounce.Hard, "relay_denied", "5.7.1", 554},
		{"relay denied 4xx soft", bounce.Input{Code: 451, Text: "451 relaying denied, try later"}, bounce.Soft, "relay_denied", "", 0},
		{"421 5.7.32 is class 4", bounce.Input{Code: 421, Status: "5.7.32", Text: "421 5.7.32 Your email has been rate limited because the From: header isn't aligned with either the SPF or DKIM organizational domain."}, bounce.Soft, "auth_failure", "5.7.32", 421},
		{"unknown 5xx undetermined", bounce.Input{Code: 554, Text: "554 delivery error: dd Requested mail action aborted"}, bounce.Undetermined, "unknown", "", 554},
		{"unknown 4xx soft", bounce.Input{Code: 450, Status: "4.0.0", Text: "450 4.0.0 Temporary failure"}, bounce.Soft, "unknown", "4.0.0", 450},
		{"unknown code from text", bounce.Input{Text: "smtp;550 something odd happened"}, bounce.Undetermined, "unknown", "", 550},
		{"spam 5xx is soft", bounce.Input{Code: 550, Text: "550 5.7.1 Message rejected as spam"}, bounce.Soft, "spam_content", "", 0},

		// Labels are weak.
		{"label soft fills unknown", bounce.Input{Code: 554, Text: "554 Transaction failed", Label: "soft_bounces"}, bounce.Soft, "unknown", "", 0},
		{"label hard does not make 5xx unknown hard", bounce.Input{Code: 554, Text: "554 Transaction failed", Label: "hard_bounces"}, bounce.Undetermined, "unknown", "", 0},
		{"label hard with no evidence at all", bounce.Input{Text: "", Label: "hard_bounces"}, bounce.Hard, "unknown", "", 0},
		{"label soft cannot soften user unknown", bounce.Input{Code: 550, Text: "550 5.1.1 user unknown", Label: "soft_bounces"}, bounce.Hard, "user_unknown", "", 0},
		{"label hard cannot harden mailbox full", bounce.Input{Code: 552, Text: "552 mailbox full", Label: "hard_bounces"}, bounce.Soft, "mailbox_full", "", 0},
		{"label soft softens disabled without codes", bounce.Input{Text: "account is disabled", Label: "soft_bounces"}, bounce.Soft, "mailbox_disabled", "", 0},

		// Status extraction edge cases.
		{"status embedded with #", bounce.Input{Text: "550 sorry, no mailbox here by that name (#5.1.1 - chkusr)"}, bounce.Hard, "user_unknown", "5.1.1", 550},
		{"IP is not a status", bounce.Input{Code: 550, Text: "550 Rejected: 5.7.1.100 listed"}, bounce.Undetermined, "unknown", "", 0},
		{"Yahoo [#4.16.1] ignored", bounce.Input{Text: "451 Resources temporarily unavailable. Please try again later [#4.16.1]."}, bounce.Soft, "system_error", "", 451},
		{"ImprovMX #id code ignored", bounce.Input{Code: 551, Text: "551 Domain not found (#id-5.9.2)"}, bounce.Hard, "host_unknown", "", 0},
		{"weak field status yields to text", bounce.Input{Code: 550, Status: "5.0.0", Text: "550 5.1.1 <a@b.example>: Recipient address rejected"}, bounce.Hard, "user_unknown", "5.1.1", 0},
		{"status only", bounce.Input{Status: "5.1.1"}, bounce.Hard, "user_unknown", "5.1.1", 0},
		{"status 4.4.4 is network", bounce.Input{Status: "4.4.4"}, bounce.Soft, "network_error", "4.4.4", 0},
		{"status 5.4.4 is host unknown", bounce.Input{Status: "5.4.4"}, bounce.Hard, "host_unknown", "5.4.4", 0},
		{"code 552 fallback", bounce.Input{Code: 552, Text: "552 requested action aborted"}, bounce.Soft, "mailbox_full", "", 0},
		{"code 421 fallback", bounce.Input{Code: 421, Text: "421 closing connection"}, bounce.Soft, "system_error", "", 0},
		{"vendor status 5.7.606", bounce.Input{Code: 550, Status: "5.7.606", Text: "550 5.7.606 see https://sender.office.com"}, bounce.Soft, "blocked", "5.7.606", 0},

		// Multi-line replies and wrappers.
		{"gmail multi-line user unknown", bounce.Input{Text: "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient's email address for typos or\r\n550-5.1.1 unnecessary spaces. Learn more at\r\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp"}, bounce.Hard, "user_unknown", "5.1.1", 550},
		{"gmail multi-line unsolicited", bounce.Input{Text: "550-5.7.1 [192.0.2.1      12] Our system has detected that this message is\n550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n550-5.7.1 this message has been blocked. Please visit\n550 5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError z1si - gsmtp"}, bounce.Soft, "spam_content", "5.7.1", 550},
		{"gmail joined rate of unsolicited", bounce.Input{Text: "421-4.7.28 [192.0.2.1 15] Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating from your IP address."}, bounce.Soft, "bad_reputation", "4.7.28", 421},
		{"relaying host name is not a cause", bounce.Input{Text: "host spamfilter.example.net[192.0.2.1] said: 451 4.3.0 temporary failure (in reply to RCPT TO command)"}, bounce.Soft, "system_error", "4.3.0", 451},
		{"host name with rbl is not a list", bounce.Input{Text: "host mx.rbl-free.example.com[192.0.2.1] said: 550 5.1.1 User unknown"}, bounce.Hard, "user_unknown", "", 0},

		// Servers not in the corpus.
		{"exchange recipient not found", bounce.Input{Text: "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient user@contoso.com not found by SMTP address lookup"}, bounce.Hard, "user_unknown", "", 0},
		{"exchange nonexistent domain", bounce.Input{Text: "#< #5.4.4 smtp;554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain> #SMTP#"}, bounce.Hard, "host_unknown", "5.4.4", 0},
		{"exchange sender not authenticated for group", bounce.Input{Text: "550 5.7.133 RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication required; Delivery restriction check failed as sender not authenticated"}, bounce.Soft, "recipient_filtered", "", 0},
		{"exchange hop count", bounce.Input{Text: "554 5.4.14 Hop count exceeded - possible mail loop ATTR34"}, bounce.Soft, "network_error", "", 0},
		{"exchange dbeb", bounce.Input{Text: "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DM6NAM12FT033.eop-nam12.prod.protection.outlook.com]"}, bounce.Hard, "user_unknown", "5.4.1", 550},
		{"exchange traffic not accepted", bounce.Input{Text: "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP."}, bounce.Soft, "blocked", "", 0},
		{"postfix helo rejected", bounce.Input{Text: "554 5.7.1 <mail.example>: Helo command rejected: Host not found"}, bounce.Soft, "blocked", "", 0},
		{"postfix no hostname", bounce.Input{Text: "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]"}, bounce.Soft, "require_ptr", "", 0},
		{"postfix sender domain not found", bounce.Input{Text: "450 4.1.8 <a@b.example>: Sender address rejected: Domain not found"}, bounce.Soft, "sender_rejected", "", 0},
		{"postfix loops back", bounce.Input{Text: "mail for example.com loops back to myself"}, bounce.Soft, "network_error", "", 0},
		{"postfix dns try again", bounce.Input{Text: "Host or domain name not found. Name service error for name=example.com type=MX: Host not found, try again"}, bounce.Soft, "network_error", "", 0},
		{"qmail rcpthosts", bounce.Input{Text: "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"}, bounce.Hard, "relay_denied", "5.7.1", 553},
		{"sendmail service unavailable", bounce.Input{Text: "554 5.0.0 Service unavailable"}, bounce.Soft, "system_error", "", 0},
		{"barracuda reputation list", bounce.Input{Text: "554 Service unavailable; Client host [192.0.2.1] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.1"}, bounce.Soft, "blocked", "", 0},
		{"hotmail SC-001", bounce.Input{Text: "550 SC-001 (COL004-MC1F43) Unfortunately, messages from 192.0.2.1 weren't sent. Please contact your Internet service provider since part of their network is on our block list."}, bounce.Soft, "blocked", "", 0},
		{"hotmail RP-001", bounce.Input{Text: "421 RP-001 (BAY004-MC1F12) Unfortunately, some messages from 192.0.2.1 weren't sent. Please try again. We have limits for how many messages can be sent per hour and per day."}, bounce.Soft, "rate_limited", "", 0},
		{"yahoo TS03", bounce.Input{Text: "421 4.7.0 [TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed."}, bounce.Soft, "bad_reputation", "", 0},
		{"cox CXBL", bounce.Input{Text: "554 5.7.1 192.0.2.1 has been blocked for spam. AUP#CXBL"}, bounce.Soft, "blocked", "", 0},
		{"ses not verified", bounce.Input{Text: "554 Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: a@b.example"}, bounce.Soft, "sender_rejected", "", 0},
		{"ses suppression", bounce.Input{Text: "Amazon SES did not send the message to this address because it is on the suppression list for your account."}, bounce.Hard, "suppressed", "", 0},
		{"mailgun previously bounced", bounce.Input{Text: "Not delivering to previously bounced address", Label: "soft_bounces"}, bounce.Hard, "suppressed", "", 0},
		{"rate limit says try again in", bounce.Input{Text: "421 4.7.0 Too many connections, try again in 5 minutes"}, bounce.Soft, "rate_limited", "", 0},
		{"greylist try again in", bounce.Input{Text: "451 4.7.1 Please try again in 300 seconds"}, bounce.Soft, "greylisted", "", 0},
		{"sending quota is not mailbox quota", bounce.Input{Text: "550 5.4.5 Daily sending quota exceeded."}, bounce.Soft, "rate_limited", "", 0},
		{"gmail unauthenticated 5.7.26", bounce.Input{Text: "550 5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail users, and has been blocked."}, bounce.Soft, "auth_failure", "", 0},
		{"password", bounce.Input{Text: "535 5.7.8 Username and Password not accepted"}, bounce.Soft, "security_error", "", 0},
		{"starttls", bounce.Input{Text: "530 5.7.0 Must issue a STARTTLS command first"}, bounce.Soft, "tls_required", "", 0},
		{"virus", bounce.Input{Text: "550 5.7.1 Message contains a virus (Eicar-Test-Signature)"}, bounce.Soft, "virus_detected", "", 0},
		{"whole text blocked", bounce.Input{Code: 550, Text: "Blocked."}, bounce.Soft, "blocked", "", 0},
		{"time out", bounce.Input{Text: "Deferred: Connection timed out with mx.example.com."}, bounce.Soft, "expired", "", 0},

		// Non-English replies.
		{"ru user not found", bounce.Input{Code: 550, Text: "550 Пользователь не найден"}, bounce.Hard, "user_unknown", "", 0},
		{"ru mailbox does not exist", bounce.Input{Text: "550 5.1.1 Почтовый ящик не существует"}, bounce.Hard, "user_unknown", "", 0},
		{"ru mailbox full", bounce.Input{Code: 452, Text: "452 4.2.2 Почтовый ящик переполнен"}, bounce.Soft, "mailbox_full", "", 0},
		{"ru blocked account", bounce.Input{Code: 550, Text: "550 Аккаунт заблокирован"}, bounce.Hard, "mailbox_disabled", "", 0},
		{"es no existe", bounce.Input{Text: "550 5.1.1 La dirección de correo no existe"}, bounce.Hard, "user_unknown", "", 0},
		{"es user unknown", bounce.Input{Text: "550 Usuario desconocido"}, bounce.Hard, "user_unknown", "", 0},
		{"es mailbox full", bounce.Input{Text: "552 5.2.2 Buzón lleno"}, bounce.Soft, "mailbox_full", "", 0},
		{"es domain", bounce.Input{Text: "550 El dominio no existe"}, bounce.Hard, "host_unknown", "", 0},
		{"pt user unknown", bounce.Input{Text: "550 5.1.1 Usuário desconhecido"}, bounce.Hard, "user_unknown", "", 0},
		{"pt does not exist", bounce.Input{Text: "550 Endereço de e-mail não existe"}, bounce.Hard, "user_unknown", "", 0},
		{"pt mailbox full", bounce.Input{Text: "552 Caixa postal cheia"}, bounce.Soft, "mailbox_full", "", 0},
		{"de unknown", bounce.Input{Text: "550 5.1.1 Der Empfänger ist unbekannt"}, bounce.Hard, "user_unknown", "", 0},
		{"de unknown error is not unknown user", bounce.Input{Code: 451, Text: "451 Unbekannter Fehler"}, bounce.Soft, "system_error", "", 0},
		{"de mailbox full", bounce.Input{Text: "552 5.2.2 Postfach voll"}, bounce.Soft, "mailbox_full", "", 0},
		{"de mailbox is full", bounce.Input{Text: "552 Das Postfach des Empfängers ist voll"}, bounce.Soft, "mailbox_full", "", 0},
		{"de ip blocked", bounce.Input{Text: "550 5.7.1 Ihre IP-Adresse ist gesperrt"}, bounce.Soft, "blocked", "", 0},
		{"fr unknown", bounce.Input{Text: "550 5.1.1 Utilisateur inconnu"}, bounce.Hard, "user_unknown", "", 0},
		{"fr n'existe pas", bounce.Input{Text: "550 5.1.1 L’adresse email n’existe pas"}, bounce.Hard, "user_unknown", "", 0},
		{"fr mailbox full", bounce.Input{Text: "452 4.2.2 Boîte pleine"}, bounce.Soft, "mailbox_full", "", 0},
		{"fr disabled", bounce.Input{Code: 550, Text: "550 Compte désactivé"}, bounce.Hard, "mailbox_disabled", "", 0},
		{"it unknown", bounce.Input{Text: "550 5.1.1 Utente sconosciuto"}, bounce.Hard, "user_unknown", "", 0},
		{"it mailbox full", bounce.Input{Text: "552 5.2.2 Casella piena"}, bounce.Soft, "mailbox_full", "", 0},
		{"it nonexistent address", bounce.Input{Text: "550 5.1.1 Indirizzo email inesistente"}, bounce.Hard, "user_unknown", "", 0},
		{"ja unknown", bounce.Input{Text: "550 宛先不明"}, bounce.Hard, "user_unknown", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := bounce.Classify(tc.in)
			if got.Class != tc.class || got.Reason != tc.reason {
				t.Errorf("got %s/%s (rule %s), want %s/%s", got.Class, got.Reason, got.Rule, tc.class, tc.reason)
			}
			if tc.status != "" && got.Status != tc.status {
				t.Errorf("status: got %q, want %q", got.Status, tc.status)
			}
			if tc.code != 0 && got.Code != tc.code {
				t.Errorf("code: got %d, want %d", got.Code, tc.code)
			}
		})
	}
}

func TestExtractStatus(t *testing.T) {
	cases := []struct{ in, want string }{
		{"550 5.1.1 user unknown", "5.1.1"},
		{"550-5.7.1 blocked", "5.7.1"},
		{"(#5.1.1)", "5.1.1"},
		{"no mailbox (#5.1.1 - chkusr)", "5.1.1"},
		{"4.7.650 rate", "4.7.650"},
		{"5.7.1.100 is an address", ""},
		{"from 192.5.1.1 said", ""},
		{"[#4.16.1]", ""},
		{"(554.30)", ""},
		{"#id-5.9.2", ""},
		{"#id-5.1.1", ""},
		{"v5.1.1 release", ""},
		{"5.1.1000", ""},
		{"5.8.1 subject out of range", ""},
		{"ends with 5.2.2.", "5.2.2"},
		{"first 4.4.1 then 5.1.1", "4.4.1"},
		{"", ""},
	}
	for _, tc := range cases {
		if got := bounce.ExtractStatus(tc.in); got != tc.want {
			t.Errorf("ExtractStatus(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExtractCode(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"550 5.1.1 user unknown", 550},
		{"smtp;421 4.7.0 try later", 421},
		{"550-5.7.1 multi", 550},
		{"#550 5.2.2 full", 550},
		{"said: 452 4.2.2", 452},
		{"Remote Server returned '550 5.1.10 x'", 550},
		{"192.0.2.250 refused", 0},
		{"(554.30)", 0},
		{"AS(201806281) x", 0},
		{"550-bl23.html", 0},
		{"id=02022-02", 0},
		{"no code here", 0},
		{"550", 0},
		{"6000 nope", 0},
	}
	for _, tc := range cases {
		if got := bounce.ExtractCode(tc.in); got != tc.want {
			t.Errorf("ExtractCode(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"  User   UNKNOWN\r\n", "user unknown"},
		{"Boîte pleine", "boite pleine"},
		{"Usuário não existe", "usuario nao existe"},
		{"Пользователь НЕ найден", "пользователь не найден"},
		{"L’adresse n’existe pas", "l'adresse n'existe pas"},
		{"550-5.7.1 first line\n550-5.7.1 second\n550 5.7.1 third", "550-5.7.1 first line second third"},
		{"host mx.example.com[192.0.2.1] said: 550 no", "host x said: 550 no"},
		{"host cx.example.org not found", "host cx.example.org not found"},
		{"To best protect our users from spam, the message has been blocked.", ", the message has been blocked."},
		// Capitals that lower to a folded letter (found by FuzzNormalize).
		{"GROẞE Mailbox", "grosse mailbox"},
		{"Åse", "ase"},
	}
	for _, tc := range cases {
		if got := bounce.Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
