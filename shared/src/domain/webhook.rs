//! Organization webhooks: which URLs an alert may be posted to (the SSRF policy), and the
//! signature a receiver checks.
//!
//! The policy is checked twice: on the URL's text when an organization's settings are saved
//! ([`WebhookUrl::parse`], whose error is the 400 message), and on the addresses its host
//! resolves to at send time ([`address_refusal`], used by the delivery adapter, which then
//! connects to exactly the address it checked).
//!
//! Signature: `X-Metrics-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! and `X-Metrics-Timestamp: <t>`. A receiver recomputes the HMAC over the timestamp, a dot and
//! the raw body bytes, compares in constant time, and refuses timestamps too far from its clock
//! ([`verify`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// The signature header: `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Metrics-Signature";
/// The signing time, also inside the signature header.
pub const TIMESTAMP_HEADER: &str = "X-Metrics-Timestamp";
/// What a receiver should accept between the signing time and its clock, by default.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// Which webhook URLs a stage accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// The local stack only (`WEBHOOK_ALLOW_LOOPBACK=true`): `http://` and loopback addresses
    /// (127.0.0.0/8, ::1, `localhost`) are accepted so alerts can be tried on one machine
    /// (`http://127.0.0.1:9099/…`). Every other refused range stays refused.
    pub allow_loopback: bool,
}

impl WebhookPolicy {
    /// Deployed stages: https only, public addresses only.
    pub const DEPLOYED: Self = Self { allow_loopback: false };
    /// The local stack.
    pub const LOCAL: Self = Self { allow_loopback: true };
}

/// The host of a webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookHost {
    /// A DNS name (lower case, IDNA-encoded); its addresses are checked at send time.
    Domain(String),
    /// An address literal, checked when parsed.
    Ip(IpAddr),
}

/// A webhook URL that passed the policy's syntax checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: String,
    https: bool,
    host: WebhookHost,
    port: u16,
}

impl WebhookUrl {
    /// Checks `raw` against `policy`; the error is a sentence for the 400 answer of the
    /// settings route. IPv4 shorthands (`127.1`, `2130706433`, `0x7f.0.0.1`) are normalised
    /// first, as browsers and resolvers would read them.
    pub fn parse(raw: &str, policy: WebhookPolicy) -> Result<Self, String> {
        if raw.len() > MAX_WEBHOOK_URL_LEN {
            return Err(format!("Must be at most {MAX_WEBHOOK_URL_LEN} characters"));
        }
        let url = url::Url::parse(raw.trim()).map_err(|e| format!("Must be an absolute URL ({e})"))?;
        let https = match url.scheme() {
            "https" => true,
            "http" if policy.allow_loopback => false,
            "http" => return Err("Must use https".into()),
            _ => return Err("Must be an https URL".into()),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("Must not contain credentials (user:password@)".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name.is_empty() {
                    return Err("Must name a host".into());
                }
                let local_name = name == "localhost" || name.ends_with(".localhost");
                if local_name && !policy.allow_loopback {
                    return Err("Must not name a loopback host (localhost)".into());
                }
                WebhookHost::Domain(name)
            }
            Some(url::Host::Ipv4(ip)) => WebhookHost::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => WebhookHost::Ip(IpAddr::V6(ip)),
            None => return Err("Must name a host".into()),
        };
        if let WebhookHost::Ip(ip) = &host
            && let Some(refusal) = address_refusal(*ip, policy)
        {
            return Err(format!("Must not be {refusal}"));
        }
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        let mut url = url;
        url.set_fragment(None);
        Ok(Self {
            url: url.into(),
            https,
            host,
            port,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    pub fn host(&self) -> &WebhookHost {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scheme, host and port only (for logs and messages: paths often hold a token).
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match &self.host {
            WebhookHost::Domain(name) => format!("{scheme}://{name}:{}", self.port),
            WebhookHost::Ip(IpAddr::V6(ip)) => format!("{scheme}://[{ip}]:{}", self.port),
            WebhookHost::Ip(ip) => format!("{scheme}://{ip}:{}", self.port),
        }
    }
}

impl fmt::Display for WebhookUrl {
    /// The origin only: a webhook's path is often its secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

/// Why `ip` may not receive a webhook under `policy`, or `None` when it may. Addresses embedding
/// an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by the address they embed.
pub fn address_refusal(ip: IpAddr, policy: WebhookPolicy) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4, policy),
        IpAddr::V6(v6) => v6_refusal(v6, policy),
    }
}

fn v4_refusal(ip: Ipv4Addr, policy: WebhookPolicy) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        return Some("the cloud metadata address");
    }
    Some(if a == 0 {
        "an unspecified address (0.0.0.0/8)"
    } else if ip.is_private() {
        "a private address (10/8, 172.16/12, 192.168/16)"
    } else if ip.is_link_local() {
        "a link-local address (169.254/16)"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared CGNAT address (100.64/10)"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.is_broadcast() || a >= 240 {
        "a reserved address (240/4)"
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (18..20).contains(&b)) {
        "a reserved address (192.0.0/24, 198.18/15)"
    } else if (a == 192 && b == 0 && c == 2) || (a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113) {
        "a documentation address"
    } else {
        return None;
    })
}

fn v6_refusal(ip: Ipv6Addr, policy: WebhookPolicy) -> Option<&'static str> {
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address (::)");
    }
    let segments = ip.segments();
    let octets = ip.octets();
    let embedded = |at: usize| Ipv4Addr::new(octets[at], octets[at + 1], octets[at + 2], octets[at + 3]);
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible).
    if segments[..5] == [0; 5] && (segments[5] == 0xffff || segments[5] == 0) {
        return v4_refusal(embedded(12), policy);
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address too.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_refusal(embedded(12), policy);
    }
    if segments[0] == 0x2002 {
        return v4_refusal(embedded(2), policy);
    }
    Some(if ip.is_unique_local() {
        "a unique-local address (fc00::/7)"
    } else if ip.is_unicast_link_local() || segments[0] & 0xffc0 == 0xfec0 {
        "a link-local address (fe80::/10)"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if segments[0] == 0x64 && segments[1] == 0xff9b {
        "a local NAT64 address (64:ff9b:1::/48)"
    } else if segments[0] == 0x2001 && segments[1] == 0 {
        "a Teredo address (2001::/32)"
    } else if segments[0] == 0x2001 && segments[1] == 0xdb8 {
        "a documentation address (2001:db8::/32)"
    } else if segments[..4] == [0x100, 0, 0, 0] {
        "a discard address (100::/64)"
    } else {
        return None;
    })
}

/// The value of [`SIGNATURE_HEADER`] for `body` signed at `timestamp` (unix seconds).
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(secret, timestamp, body)))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is not `t=<unix>,v1=<hex>`.
    Malformed,
    /// The signing time is further than the tolerance from the receiver's clock (a replay).
    Stale,
    /// No `v1` value matches the body.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed signature header",
            Self::Stale => "timestamp outside the tolerance",
            Self::Mismatch => "signature does not match the body",
        })
    }
}

/// What a receiver does: checks `header` (the [`SIGNATURE_HEADER`] value) against the raw
/// `body`, with the signing time within `tolerance_seconds` of `now` (unix seconds). Several
/// `v1=` values are accepted (one may be signed with a rotated secret).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_seconds: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => candidates.push(v.to_owned()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    let expected = hex(&mac(secret, timestamp, body));
    let matched = candidates.iter().fold(subtle::Choice::from(0), |found, candidate| {
        found | subtle::ConstantTimeEq::ct_eq(candidate.as_bytes(), expected.as_bytes())
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed(url: &str) -> Result<WebhookUrl, String> {
        WebhookUrl::parse(url, WebhookPolicy::DEPLOYED)
    }

    fn local(url: &str) -> Result<WebhookUrl, String> {
        WebhookUrl::parse(url, WebhookPolicy::LOCAL)
    }

    #[test]
    fn given_a_deployed_stage_when_a_public_https_url_is_saved_then_it_is_kept_without_fragment() {
        let url = deployed("https://hooks.slack.com/services/T0/B0/xyz#frag").unwrap();
        assert_eq!(url.as_str(), "https://hooks.slack.com/services/T0/B0/xyz");
        assert_eq!(url.host(), &WebhookHost::Domain("hooks.slack.com".into()));
        assert_eq!(url.port(), 443);
        assert_eq!(url.to_string(), "https://hooks.slack.com:443", "Display shows no path");
    }

    #[test]
    fn given_a_deployed_stage_when_the_url_is_not_https_then_it_is_refused() {
        for url in [
            "http://example.com/hook",
            "ftp://example.com/",
            "example.com/hook",
            "",
            "https://",
        ] {
            assert!(deployed(url).is_err(), "{url}");
        }
        assert_eq!(deployed("http://example.com/hook").unwrap_err(), "Must use https");
    }

    #[test]
    fn given_a_deployed_stage_when_the_host_is_an_internal_address_then_it_is_refused_naming_why() {
        let refused = [
            ("https://127.0.0.1/", "loopback"),
            ("https://127.1/", "loopback"),
            ("https://2130706433/", "loopback"),
            ("https://0x7f.0.0.1/", "loopback"),
            ("https://[::1]/", "loopback"),
            ("https://localhost/", "loopback"),
            ("https://api.localhost/", "loopback"),
            ("https://10.1.2.3/", "private"),
            ("https://172.16.0.1/", "private"),
            ("https://192.168.1.1/", "private"),
            ("https://169.254.169.254/latest/meta-data/", "metadata"),
            ("https://169.254.10.10/", "link-local"),
            ("https://100.64.0.1/", "CGNAT"),
            ("https://224.0.0.1/", "multicast"),
            ("https://0.0.0.0/", "unspecified"),
            ("https://[::]/", "unspecified"),
            ("https://[fd00:ec2::254]/", "unique-local"),
            ("https://[fe80::1]/", "link-local"),
            ("https://[ff02::1]/", "multicast"),
            ("https://[::ffff:169.254.169.254]/", "metadata"),
            ("https://[::ffff:10.0.0.1]/", "private"),
            ("https://[64:ff9b::a00:1]/", "private"),
            ("https://[2002:a00:1::]/", "private"),
            ("https://user:pw@example.com/", "credentials"),
        ];
        for (url, why) in refused {
            let err = deployed(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn given_the_local_stack_when_an_http_loopback_url_is_saved_then_it_is_accepted_but_other_internal_ones_are_not() {
        let url = local("http://127.0.0.1:9099/hook").unwrap();
        assert!(!url.is_https());
        assert_eq!(
            (url.host(), url.port()),
            (&WebhookHost::Ip("127.0.0.1".parse().unwrap()), 9099)
        );
        assert!(local("http://localhost:9099/").is_ok());
        assert!(local("https://hooks.example.com/").is_ok());
        assert!(
            local("http://hooks.example.com/").is_ok(),
            "its addresses are checked at send time"
        );
        assert!(local("http://169.254.169.254/").is_err());
        assert!(local("http://10.0.0.1/").is_err());
    }

    #[test]
    fn given_public_addresses_when_judged_then_they_are_allowed() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:93.184.216.34",
        ] {
            assert_eq!(
                address_refusal(ip.parse().unwrap(), WebhookPolicy::DEPLOYED),
                None,
                "{ip}"
            );
        }
        assert!(address_refusal("127.0.0.1".parse().unwrap(), WebhookPolicy::DEPLOYED).is_some());
        assert_eq!(
            address_refusal("127.0.0.1".parse().unwrap(), WebhookPolicy::LOCAL),
            None
        );
    }

    #[test]
    fn given_a_signed_body_when_verified_then_only_the_same_secret_body_and_recent_time_pass() {
        let body = br#"{"text":"hello"}"#;
        let header = signature_header("whsec_abc", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify("whsec_abc", &header, body, 1_700_000_010, 300), Ok(()));
        assert_eq!(
            verify("whsec_other", &header, body, 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_abc", &header, b"{\"text\":\"hellO\"}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_abc", &header, body, 1_700_000_400, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("whsec_abc", "v1=00", body, 0, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test",
        //   b"1700000000.{\"text\":\"hello\"}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature_header("whsec_test", 1_700_000_000, br#"{"text":"hello"}"#),
            "t=1700000000,v1=4de4482f0d79eb97df8f0e9ece4238de4e613a5ad29c846b70bc7dd6e1389e80"
        );
    }
}
