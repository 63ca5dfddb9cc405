//! The OTLP use cases (`POST /otlp/v1/metrics`, `POST /otlp/v1/logs`): read Claude Code's export
//! into usage, keep it, and answer what was refused as OTLP's `partial_success`.

use std::sync::Arc;

use aws_config::SdkConfig;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use crate::App;
use crate::app::FromEnv;
use crate::app::live::Broadcaster;
use crate::config::{ConfigError, Env, RequestConfig};
use crate::domain::ids::Caller;
use crate::domain::otlp::{Refusals, logs, metrics};
use crate::domain::usage::{UsageExport, UsageWritten};
use crate::http::error::ApiError;

/// What an OTLP function builds once per container: the single-metric state, the OTLP body
/// limit (`OTLP_MAX_BODY_BYTES`, after decompression) and the stage's content default
/// (`HOOK_CONTENT`, which also governs prompts in OTLP events; an organization's override wins).
pub struct OtlpApp {
    pub app: Arc<App>,
    pub max_body_bytes: usize,
}

impl OtlpApp {
    /// The OTLP settings around an `app` built already (the local front shares one).
    pub fn around(app: Arc<App>, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            app,
            max_body_bytes: RequestConfig::from_env(env)?.max_otlp_body_bytes,
        })
    }

    /// Keeps a metrics export sent by `caller`.
    pub async fn export_metrics(
        &self,
        caller: &Caller,
        request: &ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, ApiError> {
        self.accepting(caller)?;
        let read = metrics::read(request, &caller.user, now_ns());
        self.keep(caller, "metrics", &read.export, &read.refused, read.unknown)
            .await?;
        Ok(ExportMetricsServiceResponse {
            partial_success: (read.refused.count > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: read.refused.count as i64,
                error_message: read.refused.message(),
            }),
        })
    }

    /// Keeps a logs export sent by `caller`.
    pub async fn export_logs(
        &self,
        caller: &Caller,
        request: &ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, ApiError> {
        self.accepting(caller)?;
        let content = self.app.api.settings_of(&caller.org).content.hook_content;
        let read = logs::read(request, &caller.user, content, now_ns());
        self.keep(caller, "logs", &read.export, &read.refused, read.unknown)
            .await?;
        Ok(ExportLogsServiceResponse {
            partial_success: (read.refused.count > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: read.refused.count as i64,
                error_message: read.refused.message(),
            }),
        })
    }

    /// Stores what was read, and counts what was kept, refused and left aside (items this
    /// version does not keep are counted here, never refused) in one log line that is also
    /// CloudWatch metrics (`OtlpItems*`).
    /// Refuses (403, which exporters do not retry) an organization whose `otlp.enabled` setting
    /// is off.
    fn accepting(&self, caller: &Caller) -> Result<(), ApiError> {
        if self.app.api.settings_of(&caller.org).otlp.enabled {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "OTLP export is turned off for this organization (setting otlp.enabled)",
            ))
        }
    }

    async fn keep(
        &self,
        caller: &Caller,
        signal: &'static str,
        export: &UsageExport,
        refused: &Refusals,
        unknown: u64,
    ) -> Result<UsageWritten, ApiError> {
        let written = self.app.store.write_usage(caller, export).await?;
        let received = (export.points.len() + export.events.len()) as u64 + refused.count + unknown;
        crate::telemetry::otlp_export(
            signal,
            caller.org.as_str(),
            received,
            written.points + written.events,
            refused.count,
            unknown,
        );
        Ok(written)
    }
}

impl FromEnv for OtlpApp {
    const PUBLISHES_LIVE: bool = true;
    const API_KEYS: crate::app::KeyAccess = crate::app::KeyAccess::Read;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Self::around(Arc::new(App::from_env(env, aws)?), env)
    }

    fn live(&self) -> Option<Arc<Broadcaster>> {
        self.app.live.clone()
    }
}

fn now_ns() -> u64 {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .map_or(u64::MAX, |ns| ns as u64)
}
