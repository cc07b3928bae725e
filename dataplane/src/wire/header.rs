//! Header names: the ids the header index uses, with RFC 3261 §7.3.3 compact forms (and the compact
//! forms later RFCs registered) mapped to the same id as the long form. Matching is case-insensitive.
//! Unknown headers get [`HeaderId::Other`] and are kept by name.

/// A header the dataplane knows by name. `Other` is any other header, kept by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderId {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    Route,
    RecordRoute,
    Expires,
    MinExpires,
    ContentType,
    ContentLength,
    ContentEncoding,
    ContentDisposition,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    AuthenticationInfo,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Allow,
    AllowEvents,
    Event,
    Subject,
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    UserAgent,
    Server,
    Warning,
    Timestamp,
    RetryAfter,
    Date,
    Path,
    ReferTo,
    ReferredBy,
    SessionExpires,
    MinSe,
    Identity,
    IdentityInfo,
    AcceptContact,
    RejectContact,
    RequestDisposition,
    Privacy,
    PAssertedIdentity,
    PPreferredIdentity,
    Diversion,
    Organization,
    Priority,
    ReplyTo,
    InReplyTo,
    CallInfo,
    AlertInfo,
    ErrorInfo,
    MimeVersion,
    SubscriptionState,
    RSeq,
    RAck,
    /// Any header the table does not know; look at its name.
    Other,
}

impl HeaderId {
    /// The canonical (long) name, as ser writes it in headers it creates.
    pub fn name(self) -> &'static str {
        use HeaderId::*;
        match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            Contact => "Contact",
            MaxForwards => "Max-Forwards",
            Route => "Route",
            RecordRoute => "Record-Route",
            Expires => "Expires",
            MinExpires => "Min-Expires",
            ContentType => "Content-Type",
            ContentLength => "Content-Length",
            ContentEncoding => "Content-Encoding",
            ContentDisposition => "Content-Disposition",
            Authorization => "Authorization",
            ProxyAuthorization => "Proxy-Authorization",
            WwwAuthenticate => "WWW-Authenticate",
            ProxyAuthenticate => "Proxy-Authenticate",
            AuthenticationInfo => "Authentication-Info",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Supported => "Supported",
            Unsupported => "Unsupported",
            Allow => "Allow",
            AllowEvents => "Allow-Events",
            Event => "Event",
            Subject => "Subject",
            Accept => "Accept",
            AcceptEncoding => "Accept-Encoding",
            AcceptLanguage => "Accept-Language",
            UserAgent => "User-Agent",
            Server => "Server",
            Warning => "Warning",
            Timestamp => "Timestamp",
            RetryAfter => "Retry-After",
            Date => "Date",
            Path => "Path",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            SessionExpires => "Session-Expires",
            MinSe => "Min-SE",
            Identity => "Identity",
            IdentityInfo => "Identity-Info",
            AcceptContact => "Accept-Contact",
            RejectContact => "Reject-Contact",
            RequestDisposition => "Request-Disposition",
            Privacy => "Privacy",
            PAssertedIdentity => "P-Asserted-Identity",
            PPreferredIdentity => "P-Preferred-Identity",
            Diversion => "Diversion",
            Organization => "Organization",
            Priority => "Priority",
            ReplyTo => "Reply-To",
            InReplyTo => "In-Reply-To",
            CallInfo => "Call-Info",
            AlertInfo => "Alert-Info",
            ErrorInfo => "Error-Info",
            MimeVersion => "MIME-Version",
            SubscriptionState => "Subscription-State",
            RSeq => "RSeq",
            RAck => "RAck",
            Other => "",
        }
    }

    /// Looks a header name up, ignoring case; compact forms map to their long form's id.
    pub fn from_name(name: &[u8]) -> HeaderId {
        use HeaderId::*;
        if name.is_empty() {
            return Other;
        }
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b's' => Subject,
                b'k' => Supported,
                b'o' => Event,
                b'u' => AllowEvents,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'x' => SessionExpires,
                b'y' => Identity,
                b'n' => IdentityInfo,
                b'a' => AcceptContact,
                b'j' => RejectContact,
                b'd' => RequestDisposition,
                _ => Other,
            };
        }
        // Dispatch on (length, first letter), then one case-insensitive compare: no copying and at
        // most a few comparisons per name.
        let first = name[0].to_ascii_lowercase();
        let cand: &[(&[u8], HeaderId)] = match (name.len(), first) {
            (2, b't') => &[(b"to", To)],
            (3, b'v') => &[(b"via", Via)],
            (4, b'c') => &[(b"cseq", CSeq)],
            (4, b'd') => &[(b"date", Date)],
            (4, b'f') => &[(b"from", From)],
            (4, b'p') => &[(b"path", Path)],
            (4, b'r') => &[(b"rseq", RSeq), (b"rack", RAck)],
            (5, b'a') => &[(b"allow", Allow)],
            (5, b'e') => &[(b"event", Event)],
            (5, b'r') => &[(b"route", Route)],
            (6, b'a') => &[(b"accept", Accept)],
            (6, b'm') => &[(b"min-se", MinSe)],
            (6, b's') => &[(b"server", Server)],
            (7, b'c') => &[(b"call-id", CallId), (b"contact", Contact)],
            (7, b'e') => &[(b"expires", Expires)],
            (7, b'p') => &[(b"privacy", Privacy)],
            (7, b'r') => &[(b"require", Require)],
            (7, b's') => &[(b"subject", Subject)],
            (7, b'w') => &[(b"warning", Warning)],
            (8, b'i') => &[(b"identity", Identity)],
            (8, b'p') => &[(b"priority", Priority)],
            (8, b'r') => &[(b"refer-to", ReferTo), (b"reply-to", ReplyTo)],
            (9, b'c') => &[(b"call-info", CallInfo)],
            (9, b'd') => &[(b"diversion", Diversion)],
            (9, b's') => &[(b"supported", Supported)],
            (9, b't') => &[(b"timestamp", Timestamp)],
            (10, b'a') => &[(b"alert-info", AlertInfo)],
            (10, b'e') => &[(b"error-info", ErrorInfo)],
            (10, b'u') => &[(b"user-agent", UserAgent)],
            (11, b'i') => &[(b"in-reply-to", InReplyTo)],
            (11, b'm') => &[(b"min-expires", MinExpires)],
            (11, b'r') => &[(b"retry-after", RetryAfter), (b"referred-by", ReferredBy)],
            (11, b'u') => &[(b"unsupported", Unsupported)],
            (12, b'a') => &[(b"allow-events", AllowEvents)],
            (12, b'c') => &[(b"content-type", ContentType)],
            (12, b'm') => &[
                (b"max-forwards", MaxForwards),
                (b"mime-version", MimeVersion),
            ],
            (12, b'o') => &[(b"organization", Organization)],
            (12, b'r') => &[(b"record-route", RecordRoute)],
            (13, b'a') => &[(b"authorization", Authorization)],
            (13, b'i') => &[(b"identity-info", IdentityInfo)],
            (13, b'p') => &[(b"proxy-require", ProxyRequire)],
            (14, b'a') => &[(b"accept-contact", AcceptContact)],
            (14, b'c') => &[(b"content-length", ContentLength)],
            (14, b'r') => &[(b"reject-contact", RejectContact)],
            (15, b'a') => &[
                (b"accept-encoding", AcceptEncoding),
                (b"accept-language", AcceptLanguage),
            ],
            (15, b's') => &[(b"session-expires", SessionExpires)],
            (16, b'c') => &[(b"content-encoding", ContentEncoding)],
            (16, b'w') => &[(b"www-authenticate", WwwAuthenticate)],
            (18, b'p') => &[(b"proxy-authenticate", ProxyAuthenticate)],
            (18, b's') => &[(b"subscription-state", SubscriptionState)],
            (19, b'a') => &[(b"authentication-info", AuthenticationInfo)],
            (19, b'c') => &[(b"content-disposition", ContentDisposition)],
            (19, b'p') => &[
                (b"proxy-authorization", ProxyAuthorization),
                (b"p-asserted-identity", PAssertedIdentity),
            ],
            (19, b'r') => &[(b"request-disposition", RequestDisposition)],
            (20, b'p') => &[(b"p-preferred-identity", PPreferredIdentity)],
            _ => return Other,
        };
        for (n, id) in cand {
            if eq_fold(name, n) {
                return *id;
            }
        }
        Other
    }

    /// Headers whose value is a comma-separated list that may also be split over several header
    /// lines (RFC 3261 §7.3.1). Deleting "one value" only makes sense for these.
    pub fn is_list(self) -> bool {
        use HeaderId::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Require
                | ProxyRequire
                | Supported
                | Unsupported
                | Allow
                | AllowEvents
                | Accept
                | AcceptEncoding
                | AcceptLanguage
                | Path
                | Warning
                | AcceptContact
                | RejectContact
                | InReplyTo
                | CallInfo
                | AlertInfo
                | ErrorInfo
                | ContentEncoding
        )
    }

    /// Headers a request may carry at most once (RFC 3261 §7.3.1 and Table 2).
    pub fn is_single(self) -> bool {
        use HeaderId::*;
        matches!(
            self,
            From | To | CallId | CSeq | MaxForwards | ContentLength | ContentType | Expires
        )
    }
}

/// `name` equals the lower-case `lower` ignoring ASCII case. OR-ing 0x20 folds letters; for the
/// bytes of `lower` (`a-z`, `0-9`, `-`) no other token byte folds onto them, and names reaching this
/// are tokens (the index checks that first).
#[inline]
fn eq_fold(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).all(|(&a, &b)| (a | 0x20) == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_forms_map_to_one_id() {
        for (short, long) in [
            ("i", HeaderId::CallId),
            ("m", HeaderId::Contact),
            ("e", HeaderId::ContentEncoding),
            ("l", HeaderId::ContentLength),
            ("c", HeaderId::ContentType),
            ("f", HeaderId::From),
            ("s", HeaderId::Subject),
            ("k", HeaderId::Supported),
            ("t", HeaderId::To),
            ("v", HeaderId::Via),
            ("o", HeaderId::Event),
            ("u", HeaderId::AllowEvents),
            ("r", HeaderId::ReferTo),
            ("b", HeaderId::ReferredBy),
            ("x", HeaderId::SessionExpires),
            ("y", HeaderId::Identity),
        ] {
            assert_eq!(HeaderId::from_name(short.as_bytes()), long, "{short}");
            assert_eq!(
                HeaderId::from_name(short.to_uppercase().as_bytes()),
                long,
                "{short}"
            );
            assert_eq!(HeaderId::from_name(long.name().as_bytes()), long);
            assert_eq!(
                HeaderId::from_name(long.name().to_uppercase().as_bytes()),
                long
            );
        }
    }

    #[test]
    fn unknown_names_are_other() {
        assert_eq!(HeaderId::from_name(b"NewFangledHeader"), HeaderId::Other);
        assert_eq!(HeaderId::from_name(b"C%6Fntact"), HeaderId::Other);
        assert_eq!(HeaderId::from_name(b"q"), HeaderId::Other);
        assert_eq!(
            HeaderId::from_name(b"a-very-long-header-name-that-is-unknown"),
            HeaderId::Other
        );
        assert_eq!(HeaderId::from_name(b"ViA"), HeaderId::Via);
    }
}
