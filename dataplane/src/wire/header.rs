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
        // Longest known name is 20 bytes; anything longer is unknown. Lower-case into a stack
        // buffer so the match below compares plain byte strings.
        let mut low = [0u8; 24];
        if name.len() > low.len() {
            return Other;
        }
        for (d, s) in low.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        match &low[..name.len()] {
            b"via" => Via,
            b"from" => From,
            b"to" => To,
            b"call-id" => CallId,
            b"cseq" => CSeq,
            b"contact" => Contact,
            b"max-forwards" => MaxForwards,
            b"route" => Route,
            b"record-route" => RecordRoute,
            b"expires" => Expires,
            b"min-expires" => MinExpires,
            b"content-type" => ContentType,
            b"content-length" => ContentLength,
            b"content-encoding" => ContentEncoding,
            b"content-disposition" => ContentDisposition,
            b"authorization" => Authorization,
            b"proxy-authorization" => ProxyAuthorization,
            b"www-authenticate" => WwwAuthenticate,
            b"proxy-authenticate" => ProxyAuthenticate,
            b"authentication-info" => AuthenticationInfo,
            b"require" => Require,
            b"proxy-require" => ProxyRequire,
            b"supported" => Supported,
            b"unsupported" => Unsupported,
            b"allow" => Allow,
            b"allow-events" => AllowEvents,
            b"event" => Event,
            b"subject" => Subject,
            b"accept" => Accept,
            b"accept-encoding" => AcceptEncoding,
            b"accept-language" => AcceptLanguage,
            b"user-agent" => UserAgent,
            b"server" => Server,
            b"warning" => Warning,
            b"timestamp" => Timestamp,
            b"retry-after" => RetryAfter,
            b"date" => Date,
            b"path" => Path,
            b"refer-to" => ReferTo,
            b"referred-by" => ReferredBy,
            b"session-expires" => SessionExpires,
            b"min-se" => MinSe,
            b"identity" => Identity,
            b"identity-info" => IdentityInfo,
            b"accept-contact" => AcceptContact,
            b"reject-contact" => RejectContact,
            b"request-disposition" => RequestDisposition,
            b"privacy" => Privacy,
            b"p-asserted-identity" => PAssertedIdentity,
            b"p-preferred-identity" => PPreferredIdentity,
            b"diversion" => Diversion,
            b"organization" => Organization,
            b"priority" => Priority,
            b"reply-to" => ReplyTo,
            b"in-reply-to" => InReplyTo,
            b"call-info" => CallInfo,
            b"alert-info" => AlertInfo,
            b"error-info" => ErrorInfo,
            b"mime-version" => MimeVersion,
            b"subscription-state" => SubscriptionState,
            b"rseq" => RSeq,
            b"rack" => RAck,
            _ => Other,
        }
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
