package bounce

// The text rules of BOUNCES.md §5, in decision order. The first rule with a
// matching pattern decides the reason; inside a rule the patterns are
// alternatives. Patterns are written in normalised form (lowercase, Latin
// diacritics folded, see Normalize); match.go documents the syntax.
//
// Non-English phrases sit next to their English equivalents. They are
// written to be specific ("utilisateur inconnu", not "inconnu") because a
// loose word such as "unknown" also appears in "unknown error".

type rule struct {
	reason string
	pats   []string
	// unless vetoes the whole rule when one of its patterns matches: the
	// mailbox quota rule must not fire on a sender-side "sending quota".
	unless []string
	// cond is an extra test on the status; a rule with cond and no pats
	// decides on cond alone. It is a value, not a func, so that the per-call
	// state stays on the stack.
	cond condition
	// name describes a cond-only rule in Result.Rule.
	name string
}

var textRules = []rule{
	// Tier 0: the ESP did not try.
	{reason: "suppressed", pats: []string{
		"has suppressed sending to this address", "on the suppression list", "on your suppression list",
		"on the account-level suppression list", "not delivering to previously bounced address",
		"previously bounced", "bounced address", "unsubscribed address", "spam reporting address", "marked as inactive", "not delivering to a user who",
		"not delivering to unsubscribed", "address is suppressed", "recipient is suppressed",
	}},

	// Tier 1: causes that must beat generic phrases, in the order of §5.
	{reason: "greylisted", pats: []string{
		"greylist", "graylist", "grey-list", "gray-list", "grey list", "gray list", "grauliste",
		"address verification in progress", "verification in progress", "rechazo temporal...greylisting",
	}},
	// "Try again in 300 seconds" is greylisting's signature, but a rate limit
	// may say the same ("too many connections, try again in 5 minutes").
	{reason: "greylisted", pats: []string{`try again in \d`}, unless: []string{
		"too many", "rate limit", "limit exceeded", "frequency", "too fast", "too quickly",
	}},
	// SES: a duplicate DKIM-Signature header is a header error, not a failed
	// signature.
	{reason: "content_error", pats: []string{"duplicate header 'dkim-signature'", `duplicate header "dkim-signature"`}},
	{reason: "auth_failure", pats: []string{
		`\bspf\b`, `\bdkim\b`, `\bdmarc\b`, "arc validation", "not aligned with", "unauthenticated email",
		"sender is unauthenticated", "mail is unauthenticated", "message is unauthenticated", "fails to pass authentication checks", "authentication checks",
		"required authentication level", "domainkeys", "sender policy framework", "sender id verification",
		"dkim-signature",
	}},
	{reason: "tls_required", pats: []string{
		"starttls", "tls required", "tls is required", "requires tls", "require tls", "not using a tls",
		"does not support tls", "doesn't support tls", "tls connection required", "tls negotiation",
		"tls handshake", "mta-sts", `\bdane\b`, `\btlsa\b`, "certificate-expired", "certificate-host-mismatch",
		"certificate has expired", "certificate verify failed", "certificate verification failed",
		"encryption required", "must use tls", "requiretls",
	}},
	{reason: "require_ptr", pats: []string{
		"ptr record", "ptr resource record", `\bno ptr\b`, "missing ptr", "reverse dns", "reverse-dns",
		`\brdns\b`, "reverse lookup", "reverse hostname", "ip name lookup failed", "cannot find your hostname",
		"can't find your hostname", "cannot find your reverse hostname", "unverifyable sending ip",
		"unverifiable sending ip", "client host name lookup failed", "no reverse",
	}},
	{reason: "spam_content", pats: []string{
		"uribl", "surbl", "blacklisted url", "spam url", "url is blacklisted", "blacklisted link",
		"url in message is listed", "blacklisted domain in message",
	}},
	// Sending to or from an address on a list is a sender problem; it must
	// come before "blacklisted" below.
	{reason: "sender_rejected", pats: []string{"an address that has been blacklisted", "address that has been blacklisted"}},
	{reason: "blocked", pats: []string{
		"spamhaus", "sorbs", "spamcop", "barracudacentral", "cbl.abuseat.org", "abuseat", "csi.cloudmark.com",
		"cloudmark", "poor reputation sender", "prs.proofpoint.com", "proofpoint.com/dnsbl", "dnsbl", `\brbl\b`,
		"blacklist", "black list", "black-list", "block list", "blocklist", "block listed", "blocked using",
		"denylist", "deny list", "uceprotect", "spamrats", "mailspike", "psbl", "lista negra", "schwarze liste",
		"liste noire", "lista nera", "черный список", "черном списке", "черный лист",
	}},
	{reason: "bad_reputation", pats: []string{
		"reputation", "user complaints", `\bcomplaints\b`, "unusual rate of unsolicited", "unexpected volume",
		"suspected spam sender", "poor sending", "репутаци",
	}},
	{reason: "mailbox_full", pats: []string{
		"mailbox full", "mailbox is full", "mailbox was full", "mailbox has exceeded", "mailbox is over",
		"mailbox size limit", "mailbox exceeds", "mailbox would exceed", "mailfolder is full", "mail folder is full",
		"mailbox exceeded", "inbox is full", "inbox is out of storage", "out of storage space", "full mailbox",
		"exceeded storage allocation", "exceeds allowed size", "user has too many messages",
		"too many messages in mailbox", "too many messages in this mailbox", "mailbox is out of space",
		"not enough space in mailbox", "account is full", "recipient's mailbox is full",
		"number of messages...exceeded the local limit", "insufficient disk space&&mailbox",
		"insufficient disk space&&user", "insufficient disk space&&recipient", "boite du destinataire pleine",
		"boite pleine", "boite aux lettres pleine", "boite de reception pleine", "boite mail pleine",
		"boite est pleine", "casella piena", "casella di posta piena", "casella postale piena", "mailbox piena", "casella di posta e piena", `\bist voll\b`, "speicher voll", "excedido su cuota", "casella e piena",
		"buzon lleno", "buzon esta lleno", "buzon de correo lleno", "casilla llena", "casilla esta llena",
		"caixa postal cheia", "caixa de correio cheia", "caixa cheia", "caixa postal esta cheia", "caixa esta cheia",
		"postfach voll", "postfach ist voll", "mailbox voll", "mailbox ist voll", "speicherplatz",
		"postbus vol", "postbus is vol", "mailbox vol", "ящик переполнен", "переполнен", "превышен размер",
		"недостаточно места", "skrzynka pelna", "skrzynka jest pelna", "schranka je plna", "邮箱已满", "邮箱空间不足",
	}},
	{reason: "mailbox_full", pats: []string{
		"over quota", "overquota", "over-quota", "quota exceeded", "exceeded quota", "exceeds quota", "quota exceed",
		"exceeded the quota", "exceeded its quota", "exceeded their quota", "disk quota", "storage quota",
		"quota violation", "quota full", "quota reached", "user quota", "mailbox quota", "cuota excedida",
		"cuota superada", "excede la cuota", "excedio la cuota", "cota excedida", "quota excedida",
		"excedeu a quota", "quota depassee", "quota depasse", "quota atteint", "quota superata",
		"quota uberschritten", "kontingent", "квота", "квоты",
	}, unless: []string{
		"sending quota", "send quota", "relay quota", "submission quota", "queue quota", "daily...limit",
		"message-id", "sending limit", "per hour", "per day", "recipient rate",
	}},
	{reason: "rate_limited", pats: []string{
		"rate limit", "ratelimit", "rate-limit", "too many recipients", "too many connections", "too many concurrent",
		"concurrent connections", "connection rate", "receiving mail too quickly", "receiving email too quickly",
		"receiving mail at a rate", "receiving email at a rate", "too quickly", "too fast", "frequency limited",
		"frequency limit", "max message per connection", "maximum number of messages per", "excessive volume",
		"exceeded...limit for the number of messages", "limit for the number of messages", "too many recent messages",
		"too many messages", "sent to too many recipients", "daily user sending limit", "sending limit",
		"daily relay quota", "relay quota", "queue quota exceeded", "exceeded permitted limits", "sending quota",
		"submission quota", "daily limit", "hourly limit", "throttl", "too many sessions", "reciplimit", "connection limit",
		"message rate", "sending rate", "слишком много", "demasiados mensajes", "trop de messages",
		"zu viele", "troppi messaggi",
	}},
	{reason: "blocked", pats: []string{
		"client host rejected", "client host...blocked", "banned sending ip", "banned sender", `\bip...is blocked`,
		`\bip...has been blocked`, `\bip address...blocked`, "blocked ip", `\bip blocked`, "blocked for abuse",
		"abuse. go away", "identified as spammer", "adresse ip source bloquee", "ip bloquee", "ip bloquead",
		"(bl)", "blokeeris", "you are not allowed to connect", "your access to submit messages to this e-mail system has been rejected",
		"smtp server of your isp", "ip not in whitelist", "not authorized to send email directly to our servers",
		"host network not allowed", "policy restrictions (ip based)", "access denied, rejected by recipient",
		"traffic not accepted from this ip", "helo command rejected", "client blocked", `\bip...gesperrt`, "bad helo", "ers-customized-block", "block for spam", ":blocked)",
		"dynamic ip", "dynamic address", "dialup", "dial-up", "residential ip", "from your country",
		"connections not accepted from", "connection refused by policy", "your ip has been", "your ip address has been",
		"sending ip is", "has been banned", "ip gesperrt", "ip bloccat", "ip заблокирован", "ip-адрес заблокирован",
	}},
	{reason: "virus_detected", pats: []string{
		"virus", "malware", "infected", "illegal attachment", "banned content", "potential security issue",
		`\bexecutable`, "trojan", "prohibited attachment", "blocked attachment", "banned attachment",
		"dangerous attachment", "unsafe attachment", "attachment type", "file type not allowed", "вирус",
	}},
	// Header-size phrases read like size limits but are header errors.
	{reason: "content_error", pats: []string{
		"header size", "headers too large", "header too large", "header that exceeds", "header exceeds",
		"headers exceed", "line too long", "bare lf", "bare linefeed", "bare <lf>",
	}},
	{reason: "message_too_large", pats: []string{
		"message too large", "message is too large", "message size", "size limit", "exceeds...message size",
		"message length exceeds", "too big", "number of attachments", "mail size", "message exceeds the maximum",
		"size exceeds", "exceeds the maximum size", "exceeds the size", "exceeds size", "message too long",
		"demasiado grande", "trop volumineux", "trop gros", "zu gross", "troppo grande", "muito grande",
		"слишком больш", "размер сообщения",
	}},

	// Tier 2: address-level causes. A failure of the sender, or one in the
	// MAIL FROM stage, is about our address, not the recipient's.
	{reason: "sender_rejected", pats: []string{
		"sender address rejected", "domain of sender address", "sender was rejected", "sender rejected",
		"sender is rejected", "sender has been rejected", "sender address is rejected", "sender domain rejected",
		"sender address...not a valid", "sender verify failed", "sender verification failed", "sender unknown",
		"unknown sender", "sender domain not found", "sender domain does not exist", "sender domain must exist",
		"sender address does not exist", "unroutable sender", "sender address is invalid",
		"after mail from&&no such domain", "after mail from&&does not exist", "after mail from&&access denied",
		"after mail from&&domain not found", "after mail from&&not found", "after mail from&&user unknown",
		"after mail from&&invalid address",
		"no such domain&&in reply to mail from command", "does not exist&&in reply to mail from command",
		"access denied&&in reply to mail from command", "domain not found&&in reply to mail from command",
		"not found&&in reply to mail from command", "invalid address&&in reply to mail from command",
	}},
	{reason: "sender_rejected", name: "status x.1.7/x.1.8 (sender)", cond: condSenderStatus},
	{reason: "mailbox_disabled", pats: []string{
		`\bdisabled\b`, `\binactive\b`, "deactivated", `\bsuspended\b`, "account is locked", "temporary locked",
		"temporarily locked", "mailbox is locked", "account locked", "mailbox locked", `\bfrozen\b`,
		"blocked due to inactivity", "no longer active", "expired account", "account expired", "account has expired", "mailbox expired",
		"discontinued", "le compte du destinataire est bloque", "compte bloque", "compte desactive",
		"recipient address rejected: inactive", "policy rejection on the target address", "account is blocked",
		"account has been blocked", "mailbox is blocked", "mailbox has been blocked", "recipient account is blocked",
		"account blocked", "mailbox blocked", "desactivad", "desativad", "deaktiviert", "gesperrt", "desactive",
		"disattivat", "sospes", "заблокирован", "отключен", "неактив", "cuenta bloqueada", "conta bloqueada",
	}, unless: []string{
		"your account", "sender account", "sending account", "sender's account", "relay", "ip gesperrt",
	}},
	// Resolver failures that say "try again" are temporary, even though the
	// rest of the sentence names a host.
	{reason: "network_error", pats: []string{
		"host not found, try again", "name server reply", "temporary failure in name resolution",
		"dns temporary failure", "temporary dns", "servfail",
	}},
	{reason: "host_unknown", pats: []string{
		"domain does not exist", "domain doesn't exist", "no such domain", "domain not found", "domain name not found",
		"nxdomain", "nonexistentdomain", "nonexistent domain", "non-existent domain", "dominio inesistente", "unknown domain", "domain unknown", "invalid domain", "domain is invalid", "domain name is invalid",
		"dominio no existe", "dominio inexistente", "domaine inexistant", "domaine n'existe pas", "domain existiert nicht",
		"dominio non esiste", "домен не существует", "домен не найден", "unbekannte domain", "domain unbekannt",
		"dominio nao existe",
	}},
	{reason: "user_unknown", pats: []string{
		"user unknown", "unknown user", "unknown recipient", "recipient unknown", "unknown address", "address unknown",
		"addressee unknown", "unknown local part", "unknown mailbox", "mailbox unknown", "user is unknown",
		"no such user", "no such mailbox", "no such recipient", "no such address", "no such account", "no such person",
		"user not found", "recipient not found", "mailbox not found", "address not found", "account not found",
		"user does not exist", "mailbox does not exist", "address does not exist", "account does not exist",
		"recipient does not exist", "does not exist", "doesn't exist", "user not exist", "not exist",
		"invalid recipient", "invalid-recipient", "recipient invalid", "invalid mailbox", "mailbox invalid",
		"invalid user", "invalid address", "invalid e-mail address", "invalid email address", "address invalid",
		"address is invalid", "address is not valid", "not a valid email address", "not a valid e-mail address",
		"not a valid mailbox", "not a valid user", "not a valid recipient", "not a valid address", "not a valid rfc",
		"doesn't have a...account", "is no longer valid", "unallocated", "not our customer", "not in recipient list",
		"unknown or illegal", "please check if address is correct", "user name of email address not valid",
		"banned recipient", "not listed in domino directory", "not listed in public name", "recipnotfound",
		"recipientnotfound", "bad address syntax", "bad recipient",
		"adresse d au moins un destinataire invalide", "destinataire invalide", "marked as invalid",
		"no mailbox here by that name", "mailbox name not allowed", "address could not be found",
		"recipient could not be found", "user could not be found", "unrecognized recipient", "not a known user",
		"no valid recipients", "unknown account",
		"usuario desconocido", "usuario no existe", `\bno existe\b`, "destinatario desconocido", "direccion invalida",
		"direccion no valida", "direccion de correo no valida", "usuario desconhecido", `\bnao existe\b`,
		"endereco invalido", "destinatario invalido", "destinatario desconhecido", "utilisateur inconnu",
		"destinataire inconnu", "adresse inconnue", "adresse email inconnue", "compte inconnu", "n'existe pas",
		"n existe pas", "inexistant", "adresse invalide", "utente sconosciuto", "utente inesistente", "inesistente",
		"non esiste", "destinatario sconosciuto", "indirizzo sconosciuto", "indirizzo non valido",
		`\bunbekannt\b`, "existiert nicht", "gibt es nicht", "ungultige empfanger", "ungultiger empfanger",
		"ungultige adresse", "kein postfach", "пользователь не найден", "нет такого пользователя",
		"такого пользователя нет", "не существует", "неизвестный пользователь", "несуществующ", "адресат не найден",
		"ящик не найден", "адрес не найден", "не найден", "получатель не найден", "bestaat niet", "gebruiker onbekend", "nie istnieje",
		"nieznany uzytkownik", "neexistuje", "bulunamadi", "用户不存在", "收件人不存在", "地址不存在", "宛先不明",
	}},
	// Exchange Online answers "Recipient address rejected: Access denied" for
	// an address its directory does not know (DBEB); elsewhere "access
	// denied" is weak.
	{reason: "user_unknown", pats: []string{"access denied&&recipient address&&protection.outlook.com"}},
	{reason: "user_unknown", pats: []string{"access denied"}, cond: condStatus541},
	{reason: "has_moved", pats: []string{
		"no longer on server", "has moved", "has been replaced by", "mailbox moved", "user moved",
		"no forwarding address", "address has changed",
	}},
	{reason: "host_unknown", pats: []string{
		"host unknown", "unknown host", "host or domain name not found", `\bhost...not found`,
		"domain is not reachable", "couldn't find a mail exchanger", "could not find a mail exchanger",
		"couldn't find...host", "could not find...host", "unrouteable address", "unroutable address",
		`\bno mx\b`, "null mx", "does not accept mail", "doesn't receive email", "doesn't accept email",
		"indicated no smtp service", "no smtp service", "able to find the recipient domain",
		"domain...couldn't be found", "domain...could not be found", "no mail exchanger", "no valid mx",
		"has no mail server",
	}},

	// Tier 3: policy, sender and recipient filters.
	{reason: "relay_denied", pats: []string{
		"relay access denied", "relaying denied", "relaying disallowed", "relay not permitted",
		"relaying not permitted", "relay denied", "unable to relay", "not configured to relay",
		"open relay not allowed", "as a relay, but i have not been configured", "we don't handle mail for",
		"we do not relay", "relay not allowed", "relaying not allowed", "relay prohibited", "relaying prohibited",
		"allowed rcpthosts", "relaying to...denied", "relaying to...not allowed", "cannot relay", "can't relay",
		"no relaying", "relaying mail to...is not allowed",
	}},
	{reason: "sender_rejected", pats: []string{
		"invalid sender", "sender invalid", "emetteur invalide", "from: domain is invalid", "need fully-qualified address",
		"purported responsible address", "envelope blocked", "administrative prohibition", "blocked senders",
		"blocked sender", "block-send-er", "invalid dns mx or a/aaaa", "sender not allowed", "sender denied",
		"sender blocked", "address is not verified", "identities failed the check", "sender is blocked", "sender address blocked", "bad sender", "remetente invalido",
		"remitente no valido", "expediteur invalide",
	}},
	// Symantec/MessageLabs "Message filtered. Refer to the Troubleshooting
	// page" is a spam verdict; a bare "Message Filtered" (SES inbound) is
	// the recipient's filter.
	{reason: "spam_content", pats: []string{"message filtered. refer to", "message filtered...symanteccloud", "message filtered...messagelabs"}},
	{reason: "recipient_filtered", pats: []string{
		"recipient preferences", "rejected by recipients", "not in allowed-senders list", "allowed senders",
		"allowed-senders", "not authenticated by organization", "not authenticated for group",
		"not authenticated by the organization", "message filtered", "mailbox delivery restricted by policy",
		"delivery restricted", "rejected by destination domain", "recipient has blocked", "does not accept mail from you",
		"does not want to receive", "only accepts mail from", "restricted to internal", "not allowed to send to this group",
		"not authorized to send to", "notauthenticatedforgroup", "sendernotauthenticated", "delivery restriction",
		"restrictedtorecipientspermission", "resolver.rst.notauthorized", "list of senders to accept mail from", "recipient's settings",
	}},
	{reason: "content_error", pats: []string{
		"header error", "rfc 5322", "rfc5322", "rfc 2822", "rfc2822", "rfc 822", "not rfc compliant",
		"not rfc-compliant", "malformed", "missing a valid...header", "multiple addresses in from",
		"duplicate header", "8-bit data in message header", "8bit data", "invalid characters", "missing message-id",
		"missing from", "no from header", "invalid header", "bad header", "header syntax", "invalid mime",
		"non-compliant message",
	}},
	{reason: "spam_content", pats: []string{
		"spam", "unsolicited", `\bube\b`, `\bbulk\b`, "content rejected", "content denied", "scored as spam",
		"suspicion of spam", "mcspamsignature", "dt:spm", `\bjunk\b`, "phishing", "nature of the content", "content filter",
		"спам", "correo no deseado", "no deseado", "indesejad", "spamverdacht", "unerwunscht", "indesiderat",
	}},
	{reason: "policy_rejected", pats: []string{
		"policy", "anti-spoofing", "spoofed", "spoofing", "same message-id", "politica", "politique",
		"richtlinie", "политик",
	}},

	// Tier 4: transport and system.
	{reason: "security_error", pats: []string{
		"authentication required", "authentication is required", "unauthenticated senders not allowed",
		"smtp authentication", "smtp auth", "authrequired", "credentials", "auth required", "must authenticate",
		"authentication failed", "not authenticated", "password",
	}},
	{reason: "protocol_error", pats: []string{
		"syntax error", "bad sequence of commands", "improper sequence", "command parameter not implemented",
		"parameter not implemented", "unrecognized command", "command not recognized", "command unrecognized",
		"protocol violation", "protocol error", "helo/ehlo argument", "helo argument", "ehlo argument",
		"too many unauthenticated commands", "multiple destination domains per transaction", "command not implemented",
		"not implemented", "pipelining",
	}},
	// A specific network or system cause beats the generic give-up phrases
	// of "expired" below ("Message expired, DNS query failed").
	{reason: "network_error", pats: []string{
		"connection refused", "no route to host", "lost connection", "connection reset", "connection dropped",
		"name service error", "host name lookup failure", "dns query failed", "dns lookup failed", `\bloop`,
		"too many hops", "hop count exceeded", "network error", "network is unreachable", "network unreachable",
		"host unreachable", "broken pipe",
	}},
	{reason: "system_error", pats: []string{
		"internal...error", "temporary server error", "temporary system", "server busy", "server is busy",
		"system busy", "too busy", "service not available", "service is currently unavailable", "currently unavailable",
		"temporarily unavailable", "insufficient system resources", "insufficient system storage",
		"insufficient resources", "disk space", "queue file write error", "could not load", "unable to contact ldap",
		"upstream error", "license expired", "temporarily rejected", "failed to be replicated", "service refuse",
		"mailer error", "local problem", "local error", "error in processing", "processing error", "system error",
		"server error", "unknown error", "not accepting messages", "currently not accepting", "database error",
		"out of memory", "write error", "i/o error", "shutting down",
	}},
	{reason: "expired", pats: []string{
		"message expired", "delivery expired", "envelope expired", "queue.expired", "delivery time expired",
		"expired after", "retry timeout exceeded", "retry time exceeded", "giving up", "failing for a long time",
		"unable to deliver...after", "could not be delivered within", "timed out", `\btimeout`, "time out",
		"did not accept our requests to connect", "no answer from host", "retry limit", "maximum retries",
		"multiple retries",
	}},

	// Weak patterns: only when nothing stronger matched (end of §5).
	{reason: "user_unknown", pats: []string{"mailbox unavailable", "mailbox not available", "mailbox is unavailable"}, cond: condRecipientStatus},
	{reason: "user_unknown", pats: []string{"mailbox unavailable&&protection.outlook.com", "mailbox unavailable&&resolver."}},
	{reason: "user_unknown", pats: []string{"address rejected", "recipient rejected"}, cond: condAddressStatus},
	{reason: "policy_rejected", pats: []string{"access denied"}},
	{reason: "system_error", pats: []string{"service unavailable"}},
	{reason: "unknown", pats: []string{"transaction failed"}},
}

type condition uint8

const (
	condNone            condition = iota
	condSenderStatus              // x.1.7 or x.1.8: the sender's address
	condStatus541                 // 5.4.1, Exchange Online's recipient rejection
	condRecipientStatus           // 5.1.x or 5.5.0 (Microsoft, La Poste)
	condAddressStatus             // x.1.x
)

func (c condition) holds(s *state) bool {
	switch c {
	case condSenderStatus:
		return s.subject == 1 && (s.detail == 7 || s.detail == 8)
	case condStatus541:
		return s.stClass == 5 && s.subject == 4 && s.detail == 1
	case condRecipientStatus:
		return s.stClass == 5 && (s.subject == 1 || s.subject == 5 && s.detail == 0)
	case condAddressStatus:
		return s.subject == 1
	}
	return true
}

// statusReason maps an enhanced status code to a reason (BOUNCES.md §4 and
// the vendor extensions listed under it). It reports "unknown" for codes
// that carry no cause.
func statusReason(class, subject, detail int, ms bool) string {
	switch subject {
	case 1:
		switch detail {
		case 1, 3, 351:
			return "user_unknown"
		case 2:
			return "host_unknown"
		case 6:
			return "has_moved"
		case 7, 8:
			return "sender_rejected"
		case 10:
			// IANA: null MX. Exchange Online uses it for RecipientNotFound.
			if ms {
				return "user_unknown"
			}
			return "host_unknown"
		}
	case 2:
		switch detail {
		case 1:
			return "mailbox_disabled"
		case 2:
			return "mailbox_full"
		case 3:
			return "message_too_large"
		case 4:
			return "system_error"
		case 121, 122:
			return "rate_limited"
		}
	case 3:
		switch detail {
		case 0, 1, 2, 5:
			return "system_error"
		case 3:
			return "protocol_error"
		case 4:
			return "message_too_large"
		}
	case 4:
		switch {
		case detail == 1:
			if class == 4 {
				return "expired"
			}
		case detail == 4:
			if class == 5 {
				return "host_unknown"
			}
			return "network_error"
		case detail == 5:
			return "system_error"
		case detail == 7 || detail == 300 || detail == 316:
			return "expired"
		case detail == 8:
			return "tls_required"
		case detail == 0 || detail == 2 || detail == 3 || detail == 6 || detail == 14 || detail == 312:
			return "network_error"
		}
	case 5:
		switch detail {
		case 0, 1, 2, 4, 5:
			return "protocol_error"
		case 3:
			return "rate_limited"
		case 6:
			return "security_error"
		}
	case 6:
		if detail != 4 {
			return "content_error"
		}
	case 7:
		switch {
		case detail == 0 || detail == 1 || detail == 15 || detail == 19:
			return "policy_rejected"
		case detail == 2 || detail == 124 || detail == 133 || detail == 134 || detail == 136:
			return "recipient_filtered"
		case detail >= 3 && detail <= 9, detail == 12, detail == 14:
			return "security_error"
		case detail == 10 || detail == 11 || detail == 30 || detail >= 321 && detail <= 325:
			return "tls_required"
		case detail == 13:
			return "mailbox_disabled"
		case detail == 16:
			return "message_too_large"
		case detail == 17 || detail == 18:
			return "has_moved"
		case detail >= 20 && detail <= 24, detail == 26, detail == 29, detail == 32, detail == 40,
			detail == 509, detail == 515:
			return "auth_failure"
		case detail == 25:
			return "require_ptr"
		case detail == 27:
			return "sender_rejected"
		case detail == 28:
			return "bad_reputation"
		case detail >= 501 && detail <= 503:
			return "security_error"
		case detail == 504 || detail == 505:
			return "user_unknown"
		case detail == 508:
			return "rate_limited"
		case detail == 650 || detail == 651:
			if class == 4 {
				return "bad_reputation"
			}
			return "blocked"
		case detail >= 500 && detail <= 699 && class == 4:
			return "blocked"
		case detail == 506 || detail == 507 || detail == 511 || detail >= 606 && detail <= 649 ||
			detail >= 700 && detail <= 749:
			return "blocked"
		}
	}
	return "unknown"
}

// codeReason is the reply code fallback of BOUNCES.md §7.
func codeReason(code int) string {
	switch {
	case code == 421 || code == 451 || code == 452:
		return "system_error"
	case code == 454:
		return "security_error"
	case code >= 500 && code <= 504 || code == 555:
		return "protocol_error"
	case code == 530 || code == 534 || code == 535 || code == 538:
		return "security_error"
	case code == 552:
		return "mailbox_full"
	}
	return "unknown"
}
