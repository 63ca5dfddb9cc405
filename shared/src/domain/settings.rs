//! An organization's settings: the specification's Organization-Level Configuration (rate
//! limiting, data retention, performance, alerts) plus what our features added (hook content,
//! OTLP, live connections), with each field's range.
//!
//! What an organization stores is only what it changed (its *overrides*, a JSON document in
//! this shape with any subset of the fields); its *effective* settings are the stage's defaults
//! with the overrides merged over them ([RFC 7386](https://www.rfc-editor.org/rfc/rfc7386) merge
//! patch: an object merges, `null` removes, anything else replaces). The merged document is then
//! parsed whole, so every field is checked where it ends up and errors name `section.field`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::domain::batch::MAX_ENVELOPE_METRICS;
use crate::domain::hooks::HookContent;
use crate::domain::ratelimit::{Budgets, Limits};
use crate::domain::validation::{FieldError, Fields};

/// Longest retention any kind may have: ten years.
pub const MAX_RETENTION_DAYS: i64 = 3650;
/// Longest time one request's or one batch's work may take (API Gateway's own limit is 30 s).
pub const MAX_PROCESSING_TIMEOUT_MS: i64 = 29_000;
/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrganizationSettings {
    pub rate_limiting: RateLimiting,
    pub data_retention: DataRetention,
    pub performance: Performance,
    pub alerts: Alerts,
    pub content: Content,
    pub otlp: Otlp,
    pub live: Live,
}

/// The organization's ceiling (`window_ms`, `max_requests`, `burst_allowance`, as specified) and
/// each of its developers' budget over the same window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimiting {
    pub window_ms: u64,
    pub max_requests: u64,
    pub burst_allowance: u64,
    pub user_max_requests: u64,
    pub user_burst_allowance: u64,
}

/// Days each kind of data is kept, by the metric's own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DataRetention {
    pub command_executions_days: u32,
    pub agent_interactions_days: u32,
    pub user_sessions_days: u32,
    pub productivity_metrics_days: u32,
    pub hook_events_days: u32,
    pub otlp_days: u32,
    /// The hourly and daily aggregates outlive the raw rows they summarise.
    pub aggregates_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Performance {
    /// Most metrics in one batch request.
    pub batch_size_limit: u64,
    /// Longest a request's database work (or one queued batch's) may take before it is
    /// answered 503 (or retried).
    pub processing_timeout_ms: u64,
    /// Most batches of the organization in flight (accepted, not yet written) at once.
    pub concurrent_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alerts {
    /// Percent of commands and agent interactions failing over the last 5 minutes.
    pub high_error_rate_threshold: f64,
    /// p95 execution time over the last 5 minutes, in milliseconds.
    pub slow_response_threshold_ms: f64,
    /// Where alerts are posted; none: no alerts.
    pub webhook_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Content {
    /// How much Claude Code hook content is kept.
    pub hook_content: HookContent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Otlp {
    /// Whether the OTLP routes accept the organization's exports (403 when not).
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Live {
    /// Most WebSocket connections of live updates the organization may hold open.
    pub max_connections: u64,
}

const SECTIONS: &[&str] = &[
    "rate_limiting",
    "data_retention",
    "performance",
    "alerts",
    "content",
    "otlp",
    "live",
];

impl Default for OrganizationSettings {
    /// The specification's values, and the service's rate-limit defaults (docs/security.md).
    fn default() -> Self {
        Self {
            rate_limiting: RateLimiting {
                window_ms: 60_000,
                max_requests: 12_000,
                burst_allowance: 0,
                user_max_requests: 600,
                user_burst_allowance: 0,
            },
            data_retention: DataRetention {
                command_executions_days: 90,
                agent_interactions_days: 90,
                user_sessions_days: 365,
                productivity_metrics_days: 365,
                hook_events_days: 90,
                otlp_days: 90,
                aggregates_days: 400,
            },
            performance: Performance {
                batch_size_limit: crate::domain::batch::DEFAULT_BATCH_SIZE,
                processing_timeout_ms: 10_000,
                concurrent_requests: 5,
            },
            alerts: Alerts {
                high_error_rate_threshold: 5.0,
                slow_response_threshold_ms: 15.0,
                webhook_url: None,
            },
            content: Content {
                hook_content: HookContent::Metrics,
            },
            otlp: Otlp { enabled: true },
            live: Live { max_connections: 100 },
        }
    }
}

impl OrganizationSettings {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }

    /// These settings with `overrides` merged over them, checked whole.
    pub fn with_overrides(&self, overrides: &Value) -> Result<Self, Vec<FieldError>> {
        let mut merged = self.to_json();
        merge_patch(&mut merged, overrides);
        Self::parse(&merged)
    }

    /// [`OrganizationSettings::with_overrides`] that keeps what is valid: a section with a field
    /// that does not validate is left at these settings' values (its fields depend on one
    /// another: a rate limit's window without its count is another limit), and each such field
    /// is named in the list; the other sections apply (stored overrides written by hand, or
    /// before a range narrowed, must not undo what is valid in them).
    pub fn with_valid_overrides(&self, overrides: &Value) -> (Self, Vec<FieldError>) {
        let errors = match self.with_overrides(overrides) {
            Ok(settings) => return (settings, Vec::new()),
            Err(errors) => errors,
        };
        let mut kept = overrides.clone();
        for error in &errors {
            remove_section(&mut kept, &error.field);
        }
        match self.with_overrides(&kept) {
            Ok(settings) => (settings, errors),
            Err(_) => (self.clone(), errors),
        }
    }

    /// What these settings ask beyond `ceiling`, the most the stage lets an organization's
    /// admins choose: the organization's and each developer's sustained rate and burst, the
    /// batch size, batches in flight, processing time and live connections.
    pub fn beyond(&self, ceiling: &Self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut most = |field: &str, value: u64, limit: u64| {
            if value > limit {
                errors.push(FieldError::new(
                    field,
                    format!("Must be at most {limit} in this stage (its operators can raise the ceiling)"),
                ));
            }
        };
        let (rate, top) = (&self.rate_limiting, &ceiling.rate_limiting);
        // A budget is a bucket of `max + burst` tokens refilled by `max` each window. Neither its
        // sustained rate (the ceiling's over this organization's window) nor its bucket (what an
        // idle client may send at once) may pass the ceiling's: a longer window at the same rate
        // would otherwise be a bigger bucket (a day's window, a day's requests at once).
        let over_window =
            |top_max: u64| (u128::from(top_max) * u128::from(rate.window_ms) / u128::from(top.window_ms)) as u64;
        let rate_and_bucket = |top_max: u64, top_burst: u64| over_window(top_max).min(top_max + top_burst);
        let room = |top_max: u64, top_burst: u64, max: u64| (top_max + top_burst).saturating_sub(max);
        most(
            "rate_limiting.max_requests",
            rate.max_requests,
            rate_and_bucket(top.max_requests, top.burst_allowance),
        );
        most(
            "rate_limiting.burst_allowance",
            rate.burst_allowance,
            room(top.max_requests, top.burst_allowance, rate.max_requests),
        );
        most(
            "rate_limiting.user_max_requests",
            rate.user_max_requests,
            rate_and_bucket(top.user_max_requests, top.user_burst_allowance),
        );
        most(
            "rate_limiting.user_burst_allowance",
            rate.user_burst_allowance,
            room(top.user_max_requests, top.user_burst_allowance, rate.user_max_requests),
        );
        let (perf, top_perf) = (&self.performance, &ceiling.performance);
        most(
            "performance.batch_size_limit",
            perf.batch_size_limit,
            top_perf.batch_size_limit,
        );
        most(
            "performance.concurrent_requests",
            perf.concurrent_requests,
            top_perf.concurrent_requests,
        );
        most(
            "performance.processing_timeout_ms",
            perf.processing_timeout_ms,
            top_perf.processing_timeout_ms,
        );
        most(
            "live.max_connections",
            self.live.max_connections,
            ceiling.live.max_connections,
        );
        errors
    }

    /// A complete settings document: every section and field present and in range, nothing
    /// unknown.
    pub fn parse(doc: &Value) -> Result<Self, Vec<FieldError>> {
        let top = Fields::new(doc, "", SECTIONS)?;
        let mut errors = top.finish().err().unwrap_or_default();
        let mut section = |name: &str| -> Value {
            doc.get(name).cloned().unwrap_or_else(|| {
                errors.push(FieldError::new(name, "Required"));
                json!({})
            })
        };
        let (rate, retention, performance) = (
            section("rate_limiting"),
            section("data_retention"),
            section("performance"),
        );
        let (alerts, content, otlp, live) = (section("alerts"), section("content"), section("otlp"), section("live"));
        let settings = Self {
            rate_limiting: collect(RateLimiting::parse(&rate), &mut errors),
            data_retention: collect(DataRetention::parse(&retention), &mut errors),
            performance: collect(Performance::parse(&performance), &mut errors),
            alerts: collect(Alerts::parse(&alerts), &mut errors),
            content: collect(Content::parse(&content), &mut errors),
            otlp: collect(Otlp::parse(&otlp), &mut errors),
            live: collect(Live::parse(&live), &mut errors),
        };
        if errors.is_empty() { Ok(settings) } else { Err(errors) }
    }

    /// The two budgets every request of the organization is counted against.
    pub fn budgets(&self) -> Budgets {
        let r = &self.rate_limiting;
        Budgets {
            organization: Limits {
                max_requests: r.max_requests,
                window_ms: r.window_ms,
                burst_allowance: r.burst_allowance,
            },
            user: Limits {
                max_requests: r.user_max_requests,
                window_ms: r.window_ms,
                burst_allowance: r.user_burst_allowance,
            },
        }
    }

    /// What a member (not an admin) is shown: the webhook's origin only, since its path often
    /// carries a credential (Slack's do).
    pub fn for_member(&self) -> Self {
        let mut shown = self.clone();
        shown.alerts.webhook_url = shown.alerts.webhook_url.as_deref().map(origin_of);
        shown
    }
}

/// RFC 7386: objects merge key by key, `null` removes a key, anything else replaces.
/// (Twelve lines; a crate for it would bring a JSON Patch implementation we do not use.)
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else { return };
    for (key, change) in changes {
        if change.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
        }
    }
}

/// Removes the section (or top-level key) a validation error names (`section.field`).
fn remove_section(document: &mut Value, field: &str) {
    let section = field.split('.').next().unwrap_or_default();
    if let Some(object) = document.as_object_mut() {
        object.remove(section);
    }
}

/// `scheme://host[:port]` of a URL, or `"(set)"` when it has no recognisable origin.
fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(set)".into();
    };
    let host = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    // Drop any `user:password@` before the host.
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

fn collect<T: Default>(parsed: Result<T, Vec<FieldError>>, errors: &mut Vec<FieldError>) -> T {
    parsed.unwrap_or_else(|e| {
        errors.extend(e);
        T::default()
    })
}

/// A whole number field of a section, as `u64` (ranges below never go negative).
fn whole(f: &mut Fields, name: &str, min: i64, max: i64) -> u64 {
    f.required_integer(name, min, max).max(0) as u64
}

impl RateLimiting {
    fn parse(v: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(
            v,
            "rate_limiting",
            &[
                "window_ms",
                "max_requests",
                "burst_allowance",
                "user_max_requests",
                "user_burst_allowance",
            ],
        )?;
        let limits = Self {
            window_ms: whole(&mut f, "window_ms", 1000, 86_400_000),
            max_requests: whole(&mut f, "max_requests", 1, 100_000_000),
            burst_allowance: whole(&mut f, "burst_allowance", 0, 100_000_000),
            user_max_requests: whole(&mut f, "user_max_requests", 1, 100_000_000),
            user_burst_allowance: whole(&mut f, "user_burst_allowance", 0, 100_000_000),
        };
        f.finish()?;
        let budgets = OrganizationSettings {
            rate_limiting: limits,
            ..OrganizationSettings::default()
        }
        .budgets();
        let mut errors = Vec::new();
        if let Err(problem) = budgets.organization.check() {
            errors.push(FieldError::new("rate_limiting.max_requests", problem));
        }
        if let Err(problem) = budgets.user.check() {
            errors.push(FieldError::new("rate_limiting.user_max_requests", problem));
        }
        if errors.is_empty() { Ok(limits) } else { Err(errors) }
    }
}

impl Default for RateLimiting {
    fn default() -> Self {
        OrganizationSettings::default().rate_limiting
    }
}

impl DataRetention {
    const FIELDS: [&str; 7] = [
        "command_executions_days",
        "agent_interactions_days",
        "user_sessions_days",
        "productivity_metrics_days",
        "hook_events_days",
        "otlp_days",
        "aggregates_days",
    ];

    fn parse(v: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(v, "data_retention", &Self::FIELDS)?;
        let mut days = |name| f.required_integer(name, 1, MAX_RETENTION_DAYS).max(0) as u32;
        let retention = Self {
            command_executions_days: days("command_executions_days"),
            agent_interactions_days: days("agent_interactions_days"),
            user_sessions_days: days("user_sessions_days"),
            productivity_metrics_days: days("productivity_metrics_days"),
            hook_events_days: days("hook_events_days"),
            otlp_days: days("otlp_days"),
            aggregates_days: days("aggregates_days"),
        };
        f.finish()?;
        Ok(retention)
    }
}

impl Default for DataRetention {
    fn default() -> Self {
        OrganizationSettings::default().data_retention
    }
}

impl Performance {
    fn parse(v: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(
            v,
            "performance",
            &["batch_size_limit", "processing_timeout_ms", "concurrent_requests"],
        )?;
        let performance = Self {
            // One envelope never carries more than the worker accepts.
            batch_size_limit: whole(&mut f, "batch_size_limit", 1, MAX_ENVELOPE_METRICS as i64),
            processing_timeout_ms: whole(&mut f, "processing_timeout_ms", 100, MAX_PROCESSING_TIMEOUT_MS),
            concurrent_requests: whole(&mut f, "concurrent_requests", 1, 1000),
        };
        f.finish()?;
        Ok(performance)
    }
}

impl Default for Performance {
    fn default() -> Self {
        OrganizationSettings::default().performance
    }
}

impl Alerts {
    fn parse(v: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(
            v,
            "alerts",
            &["high_error_rate_threshold", "slow_response_threshold_ms", "webhook_url"],
        )?;
        let high_error_rate_threshold = f.required_number("high_error_rate_threshold", 0.0, 100.0);
        let slow_response_threshold_ms = f.required_number("slow_response_threshold_ms", 0.0, 3_600_000.0);
        let webhook_url = match v.get("webhook_url") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) => match check_webhook_syntax(url) {
                Ok(()) => Some(url.clone()),
                Err(problem) => {
                    f.error("webhook_url", problem);
                    None
                }
            },
            Some(_) => {
                f.error("webhook_url", "Must be a URL string or null");
                None
            }
        };
        f.finish()?;
        Ok(Self {
            high_error_rate_threshold,
            slow_response_threshold_ms,
            webhook_url,
        })
    }
}

impl Default for Alerts {
    fn default() -> Self {
        OrganizationSettings::default().alerts
    }
}

/// The shape every stage accepts; where a URL may point (https, public addresses) is the
/// stage's webhook policy, checked when the settings are saved and again at send time.
fn check_webhook_syntax(url: &str) -> Result<(), String> {
    if url.chars().count() > MAX_WEBHOOK_URL_CHARS {
        return Err(format!("Must be at most {MAX_WEBHOOK_URL_CHARS} characters"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("Must be an absolute http(s) URL".into());
    };
    if !matches!(scheme, "https" | "http") {
        return Err("Must be an https URL".into());
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err("Must name a host (and no user name or password)".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return Err("Must not contain spaces, backslashes or control characters".into());
    }
    Ok(())
}

impl Content {
    fn parse(v: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(v, "content", &["hook_content"])?;
        let hook_content = f.required_choice("hook_content");
        f.finish()?;
        Ok(Self { hook_content })
    }
}

impl Default for Content {
    fn default() -> Self {
        OrganizationSettings::default().content
    }
}

impl Otlp {
    fn parse(v: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(v, "otlp", &["enabled"])?;
        let enabled = f.required_boolean("enabled");
        f.finish()?;
        Ok(Self { enabled })
    }
}

impl Default for Otlp {
    fn default() -> Self {
        OrganizationSettings::default().otlp
    }
}

impl Live {
    fn parse(v: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(v, "live", &["max_connections"])?;
        let max_connections = whole(&mut f, "max_connections", 1, 100_000);
        f.finish()?;
        Ok(Self { max_connections })
    }
}

impl Default for Live {
    fn default() -> Self {
        OrganizationSettings::default().live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn the_defaults_are_the_specifications_values_and_round_trip() {
        let defaults = OrganizationSettings::default();
        assert_eq!(defaults.data_retention.command_executions_days, 90);
        assert_eq!(defaults.data_retention.user_sessions_days, 365);
        assert_eq!(defaults.performance.concurrent_requests, 5);
        assert_eq!(defaults.alerts.high_error_rate_threshold, 5.0);
        assert_eq!(defaults.alerts.slow_response_threshold_ms, 15.0);
        assert_eq!(OrganizationSettings::parse(&defaults.to_json()).unwrap(), defaults);
    }

    #[test]
    fn overrides_change_only_what_they_name_and_null_restores_the_default() {
        let defaults = OrganizationSettings::default();
        let changed = defaults
            .with_overrides(&json!({"data_retention": {"hook_events_days": 7}, "otlp": {"enabled": false}}))
            .unwrap();
        assert_eq!(changed.data_retention.hook_events_days, 7);
        assert_eq!(changed.data_retention.command_executions_days, 90);
        assert!(!changed.otlp.enabled);

        let mut overrides = json!({"data_retention": {"hook_events_days": 7}});
        merge_patch(&mut overrides, &json!({"data_retention": {"hook_events_days": null}}));
        assert_eq!(defaults.with_overrides(&overrides).unwrap(), defaults);
    }

    #[test]
    fn every_out_of_range_or_unknown_field_is_named() {
        let errors = OrganizationSettings::default()
            .with_overrides(&json!({
                "data_retention": {"command_executions_days": 0, "otlp_days": 4000},
                "performance": {"batch_size_limit": 1001, "concurrent_requests": "five"},
                "alerts": {"high_error_rate_threshold": 101, "webhook_url": "ftp://x"},
                "content": {"hook_content": "everything"},
                "colour": "blue",
                "live": {"max_connections": 0, "extra": 1},
            }))
            .unwrap_err();
        let named = fields(&errors);
        for field in [
            "data_retention.command_executions_days",
            "data_retention.otlp_days",
            "performance.batch_size_limit",
            "performance.concurrent_requests",
            "alerts.high_error_rate_threshold",
            "alerts.webhook_url",
            "content.hook_content",
            "colour",
            "live.max_connections",
            "live.extra",
        ] {
            assert!(named.contains(&field), "{field} not in {named:?}");
        }
    }

    #[test]
    fn a_section_that_is_not_an_object_is_refused_by_name() {
        let errors = OrganizationSettings::default()
            .with_overrides(&json!({"performance": 5}))
            .unwrap_err();
        assert!(
            fields(&errors).iter().any(|f| f.starts_with("performance")),
            "{errors:?}"
        );
    }

    #[test]
    fn limits_that_could_never_refill_are_refused_as_a_whole() {
        let errors = OrganizationSettings::default()
            .with_overrides(
                &json!({"rate_limiting": {"window_ms": 86_400_000, "max_requests": 1, "burst_allowance": 100_000_000}}),
            )
            .unwrap_err();
        assert_eq!(fields(&errors), ["rate_limiting.max_requests"]);
    }

    #[test]
    fn budgets_share_the_organizations_window() {
        let settings = OrganizationSettings::default()
            .with_overrides(&json!({"rate_limiting": {"window_ms": 1000, "max_requests": 50, "user_max_requests": 5}}))
            .unwrap();
        let budgets = settings.budgets();
        assert_eq!(budgets.organization.max_requests, 50);
        assert_eq!(budgets.user.max_requests, 5);
        assert_eq!(budgets.user.window_ms, 1000);
    }

    #[test]
    fn webhook_urls_need_a_host_and_members_see_only_its_origin() {
        let settings = OrganizationSettings::default()
            .with_overrides(&json!({"alerts": {"webhook_url": "https://hooks.slack.com/services/T0/B0/secret"}}))
            .unwrap();
        assert_eq!(
            settings.for_member().alerts.webhook_url.as_deref(),
            Some("https://hooks.slack.com")
        );
        for bad in [
            "https://",
            "https://user:pw@example.com/x",
            "example.com/x",
            "https://a b.com/",
            r"https://hooks.slack.com\services\T0\B0\secret",
        ] {
            let result = OrganizationSettings::default().with_overrides(&json!({"alerts": {"webhook_url": bad}}));
            assert!(result.is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_stored_fields_are_named_and_the_valid_ones_kept() {
        let defaults = OrganizationSettings::default();
        let (settings, invalid) = defaults.with_valid_overrides(&json!({
            "data_retention": {"command_executions_days": 3650, "otlp_days": "forever"},
            "rate_limiting": {"max_requests": 1, "window_ms": 31_536_000_000u64},
            "otlp": {"enabled": false},
            "colour": "blue",
        }));
        assert_eq!(
            fields(&invalid),
            ["colour", "rate_limiting.window_ms", "data_retention.otlp_days"]
        );
        assert_eq!(
            settings.data_retention, defaults.data_retention,
            "the broken section keeps the defaults"
        );
        assert_eq!(
            settings.rate_limiting, defaults.rate_limiting,
            "not a count without its window"
        );
        assert!(!settings.otlp.enabled, "the valid section applies");
    }

    #[test]
    fn admins_may_lower_capacity_but_not_raise_it_past_the_stages_ceiling() {
        let ceiling = OrganizationSettings::default();
        let lower = ceiling
            .with_overrides(&json!({"rate_limiting": {"max_requests": 100}, "performance": {"concurrent_requests": 1}}))
            .unwrap();
        assert!(lower.beyond(&ceiling).is_empty());
        // The same rate over a shorter window is no more (a smaller bucket); twice the rate is.
        let same_rate = ceiling
            .with_overrides(
                &json!({"rate_limiting": {"window_ms": 30_000, "max_requests": 6_000, "user_max_requests": 300}}),
            )
            .unwrap();
        assert!(
            same_rate.beyond(&ceiling).is_empty(),
            "{:?}",
            same_rate.beyond(&ceiling)
        );
        // The same rate over a longer window is a bigger bucket: a day's window would let an
        // idle developer send a day's requests at once.
        let bigger_bucket = ceiling
            .with_overrides(&json!({"rate_limiting": {"window_ms": 86_400_000, "max_requests": 17_280_000, "user_max_requests": 864_000}}))
            .unwrap();
        let errors = bigger_bucket.beyond(&ceiling);
        assert_eq!(
            fields(&errors),
            ["rate_limiting.max_requests", "rate_limiting.user_max_requests"]
        );
        assert!(errors[0].message.contains("at most 12000"), "{}", errors[0].message);
        let slower = ceiling
            .with_overrides(
                &json!({"rate_limiting": {"window_ms": 120_000, "max_requests": 12_000, "user_max_requests": 600}}),
            )
            .unwrap();
        assert!(slower.beyond(&ceiling).is_empty());
        let more = ceiling
            .with_overrides(&json!({
                "rate_limiting": {"window_ms": 1000, "max_requests": 1000, "burst_allowance": 50000},
                "performance": {"batch_size_limit": 1000, "concurrent_requests": 1000, "processing_timeout_ms": 29000},
                "live": {"max_connections": 100000},
            }))
            .unwrap();
        let errors = more.beyond(&ceiling);
        let mut named = fields(&errors);
        named.sort();
        assert_eq!(
            named,
            [
                "live.max_connections",
                "performance.batch_size_limit",
                "performance.concurrent_requests",
                "performance.processing_timeout_ms",
                "rate_limiting.burst_allowance",
                "rate_limiting.max_requests",
                "rate_limiting.user_max_requests",
            ]
        );
    }
}
