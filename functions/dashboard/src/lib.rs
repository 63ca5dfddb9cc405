//! `GET /dashboard` and `GET /dashboard/{asset}`: the browser dashboard's static files (one page,
//! one script, one style sheet and the vendored uPlot), embedded in the binary. The page reads the
//! API itself with the caller's token; this function knows no caller, keeps no session and
//! touches no store: it serves bytes, gzipped when the browser accepts it, with an `ETag`.
//!
//! The page learns the WebSocket URL of live updates from a `<meta name="live-url">` filled in
//! from `LIVE_URL` once per container (absent: the page's own origin's `/live`, as the local front
//! serves it), and the Content-Security-Policy lets it connect there and nowhere else.
//!
//! May import: `shared` (the response envelope, configuration), `http`, `lambda_http`, `flate2`,
//! `sha2`.

use std::io::Write;

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Error, Request, RequestExt, Response};
use sha2::{Digest, Sha256};
use shared::app::FromEnv;
use shared::config::{ConfigError, Env};
use shared::http::api::request_id;
use shared::http::error::ApiError;
use shared::http::response::Reply;

/// What this function builds once per container.
pub type State = Dashboard;

/// The variable naming the WebSocket API's URL (the stack's `LiveUrl`).
pub const LIVE_URL: &str = "LIVE_URL";

/// Not among `http::header`'s names.
const CROSS_ORIGIN_OPENER_POLICY: &str = "cross-origin-opener-policy";

const INDEX: &str = include_str!("../assets/index.html");
const LIVE_URL_PLACEHOLDER: &str = "{{LIVE_URL}}";

/// Every file of the page but the page itself: the name in `/dashboard/{asset}`, its type, its bytes.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.min.css"),
    ),
];

/// One file, as sent: plain and gzipped, with the tag both share.
pub struct Asset {
    pub name: &'static str,
    content_type: &'static str,
    plain: Vec<u8>,
    gzipped: Vec<u8>,
    etag: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, plain: Vec<u8>) -> Self {
        let digest = Sha256::digest(&plain);
        let etag = format!(
            "\"{}\"",
            digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Self {
            name,
            content_type,
            gzipped: gzip(&plain),
            plain,
            etag,
        }
    }

    /// The bytes a browser downloads for this file (it always accepts gzip).
    pub fn compressed_len(&self) -> usize {
        self.gzipped.len()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The page and its files, and the policy the page runs under.
pub struct Dashboard {
    index: Asset,
    assets: Vec<Asset>,
    content_security_policy: HeaderValue,
}

impl FromEnv for Dashboard {
    fn from_env(env: &Env, _aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Self::new(env.optional(LIVE_URL).as_deref())
    }
}

impl Dashboard {
    /// The page for a stage whose live updates are at `live_url` (`None`: the page's own origin).
    pub fn new(live_url: Option<&str>) -> Result<Self, ConfigError> {
        let live_origin = live_url.map(websocket_origin).transpose()?;
        let index = INDEX.replace(LIVE_URL_PLACEHOLDER, live_url.unwrap_or_default());
        Ok(Self {
            index: Asset::new("index.html", "text/html; charset=utf-8", index.into_bytes()),
            assets: ASSETS
                .iter()
                .map(|(name, content_type, bytes)| Asset::new(name, content_type, bytes.to_vec()))
                .collect(),
            content_security_policy: HeaderValue::from_str(&content_security_policy(live_origin.as_deref()))
                .map_err(|_| ConfigError::new(LIVE_URL, "is not a valid header value"))?,
        })
    }

    /// The page and every file it loads.
    pub fn files(&self) -> impl Iterator<Item = &Asset> {
        std::iter::once(&self.index).chain(&self.assets)
    }

    fn find(&self, name: Option<&str>) -> Option<&Asset> {
        match name {
            None => Some(&self.index),
            Some(name) => self.assets.iter().find(|asset| asset.name == name),
        }
    }
}

/// `scheme://host[:port]` of a `ws://` or `wss://` URL; anything else (or a character that could
/// leave the HTML attribute or the header it goes into) stops the start with a clear message.
fn websocket_origin(url: &str) -> Result<String, ConfigError> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| ConfigError::new(LIVE_URL, "must start with wss:// (or ws:// locally)"))?;
    let safe = |c: char| c.is_ascii_alphanumeric() || "-._~:/?=%".contains(c);
    if rest.is_empty() || !rest.chars().all(safe) {
        return Err(ConfigError::new(
            LIVE_URL,
            "must be a plain URL (letters, digits, -._~:/?=%)",
        ));
    }
    let host = rest.split('/').next().unwrap_or_default();
    Ok(format!("{}{host}", &url[..url.len() - rest.len()]))
}

/// The page runs only its own files, talks only to its own origin (the API, and `/live` there)
/// and the stage's WebSocket API, and may not be framed, post forms or change its base.
fn content_security_policy(live_origin: Option<&str>) -> String {
    let connect = match live_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

pub async fn handle(dashboard: &Dashboard, req: Request) -> Result<Response<Body>, Error> {
    let reply = Reply::start(request_id(&req));
    let name = req.path_parameters_ref().and_then(|params| params.first("asset"));
    let Some(asset) = dashboard.find(name) else {
        return Ok(reply.error(&ApiError::NotFound("dashboard file")));
    };
    let response = if not_modified(&req, asset) {
        let mut response = reply.bytes(StatusCode::NOT_MODIFIED, asset.content_type, Vec::new());
        *response.body_mut() = Body::Empty;
        response
    } else if accepts_gzip(&req) {
        let mut response = reply.bytes(StatusCode::OK, asset.content_type, asset.gzipped.clone());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        reply.bytes(StatusCode::OK, asset.content_type, asset.plain.clone())
    };
    Ok(with_page_headers(response, asset, &dashboard.content_security_policy))
}

/// Revalidated on every load (cheap: a 304 carries no body), so a deploy shows at once. The page
/// is its own browsing-context group (`Cross-Origin-Opener-Policy: same-origin`): a window of
/// another origin that opened it, or that it opened, holds no reference to it, so cannot navigate
/// it to a `#token=` link of someone else's credential.
fn with_page_headers(mut response: Response<Body>, asset: &Asset, policy: &HeaderValue) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, policy.clone());
    headers.insert(CROSS_ORIGIN_OPENER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

fn not_modified(req: &Request, asset: &Asset) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag || tag.trim() == "*"))
}

fn accepts_gzip(req: &Request) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                matches!(
                    p.trim().replace(' ', "").as_str(),
                    "q=0" | "q=0.0" | "q=0.00" | "q=0.000"
                )
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The page's budget: everything a first visit downloads, compressed (docs/dashboard.md).
    const PAGE_BUDGET_BYTES: usize = 200 * 1024;

    fn get(path_asset: Option<&str>, headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder().uri("https://example.test/dashboard");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req: Request = builder.body(Body::Empty).unwrap();
        match path_asset {
            Some(asset) => req.with_path_parameters(std::collections::HashMap::from([(
                "asset".to_owned(),
                asset.to_owned(),
            )])),
            None => req,
        }
    }

    async fn call(dashboard: &Dashboard, asset: Option<&str>, headers: &[(&str, &str)]) -> Response<Body> {
        handle(dashboard, get(asset, headers)).await.unwrap()
    }

    fn text(response: &Response<Body>) -> String {
        String::from_utf8(response.body().as_ref().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_page_names_the_stages_live_url_and_the_policy_allows_only_it() {
        let dashboard = Dashboard::new(Some("wss://abc.execute-api.eu-west-1.amazonaws.com/prod")).unwrap();
        let page = call(&dashboard, None, &[]).await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(text(&page).contains(r#"content="wss://abc.execute-api.eu-west-1.amazonaws.com/prod""#));
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("connect-src 'self' wss://abc.execute-api.eu-west-1.amazonaws.com;"));
        assert!(policy.contains("script-src 'self';") && policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe"));
    }

    #[tokio::test]
    async fn the_page_and_its_files_keep_other_windows_from_holding_a_reference_to_it() {
        let dashboard = Dashboard::new(None).unwrap();
        for asset in [None, Some("app.js")] {
            let response = call(&dashboard, asset, &[]).await;
            assert_eq!(
                response.headers()[CROSS_ORIGIN_OPENER_POLICY],
                "same-origin",
                "{asset:?}"
            );
        }
        let revalidated = call(&dashboard, None, &[("if-none-match", "*")]).await;
        assert_eq!(revalidated.status(), 304);
        assert_eq!(revalidated.headers()[CROSS_ORIGIN_OPENER_POLICY], "same-origin");
    }

    #[tokio::test]
    async fn the_page_has_no_inline_script_or_style_for_the_policy_to_refuse() {
        let page = text(&call(&Dashboard::new(None).unwrap(), None, &[]).await);
        assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains(" style="));
        let handlers = page.split(" on").skip(1).filter(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            rest[name.len()..].starts_with('=')
        });
        assert_eq!(handlers.count(), 0, "no inline event handlers");
    }

    #[test]
    fn a_live_url_that_is_not_a_websocket_url_stops_the_start() {
        for bad in ["https://x.test", "wss://x.test/\"><script>", "ws://", "wss://a b"] {
            let error = Dashboard::new(Some(bad))
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(error.variable, LIVE_URL);
        }
    }

    #[tokio::test]
    async fn files_are_gzipped_when_accepted_and_revalidated_by_etag() {
        let dashboard = Dashboard::new(None).unwrap();
        let plain = call(&dashboard, Some("app.js"), &[]).await;
        assert_eq!(plain.status(), 200);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let zipped = call(&dashboard, Some("app.js"), &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(zipped.body().as_ref())
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain.body().as_ref());
        let refused = call(&dashboard, Some("app.js"), &[("accept-encoding", "gzip;q=0")]).await;
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());

        let etag = plain.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(zipped.headers()[header::ETAG], etag.as_str());
        let again = call(&dashboard, Some("app.js"), &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), 304);
        assert!(again.body().as_ref().is_empty());
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_404_and_every_answer_carries_the_security_headers() {
        let dashboard = Dashboard::new(None).unwrap();
        let missing = call(&dashboard, Some("../Cargo.toml"), &[]).await;
        assert_eq!(missing.status(), 404);
        for response in [missing, call(&dashboard, Some("app.css"), &[]).await] {
            let headers = response.headers();
            assert!(headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
            assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        }
    }

    #[test]
    fn the_page_and_its_files_stay_within_the_budget() {
        let dashboard = Dashboard::new(None).unwrap();
        let total: usize = dashboard.files().map(Asset::compressed_len).sum();
        assert!(
            total <= PAGE_BUDGET_BYTES,
            "the dashboard is {total} bytes gzipped, over its {PAGE_BUDGET_BYTES}-byte budget"
        );
        for asset in dashboard.files() {
            println!("{}: {} bytes gzipped", asset.name, asset.compressed_len());
        }
    }
}
