//! The HTTP API routes declared in `template.yaml`, and matching request paths against them.

use http::Method;
use serde_yaml::Value;

/// One `HttpApi` event of a function in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRoute {
    pub method: Method,
    /// As written in the template, e.g. `/api/v1/metrics/session/{id}`.
    pub path: String,
    /// The cargo binary that serves it (`Metadata.BuildProperties.Binary`).
    pub binary: String,
}

impl TemplateRoute {
    /// API Gateway's route key, e.g. `POST /api/v1/metrics/command-execution`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path parameters when `path` matches this route's template.
    pub fn matches(&self, method: &Method, path: &str) -> Option<Vec<(String, String)>> {
        if *method != self.method {
            return None;
        }
        let wanted: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let given: Vec<&str> = path.trim_matches('/').split('/').collect();
        if wanted.len() != given.len() {
            return None;
        }
        let mut params = Vec::new();
        for (w, g) in wanted.iter().zip(&given) {
            match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                Some(name) if !g.is_empty() => params.push((name.to_owned(), (*g).to_owned())),
                Some(_) => return None,
                None if w == g => {}
                None => return None,
            }
        }
        Some(params)
    }
}

/// Every `HttpApi` event of every `AWS::Serverless::Function` in the template.
pub fn template_routes(template: &str) -> Result<Vec<TemplateRoute>, String> {
    let doc: Value = serde_yaml::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let mut routes = Vec::new();
    for (name, resource) in functions(&doc)? {
        let Some(events) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        let binary = function_binary(resource).ok_or_else(|| format!("{name}: no Metadata.BuildProperties.Binary"))?;
        for event in events.values() {
            if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                continue;
            }
            let props = event.get("Properties");
            let method = props
                .and_then(|p| p.get("Method"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{name}: HttpApi event without Method"))?;
            let path = props
                .and_then(|p| p.get("Path"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{name}: HttpApi event without Path"))?;
            routes.push(TemplateRoute {
                method: method
                    .to_ascii_uppercase()
                    .parse()
                    .map_err(|_| format!("{name}: bad method {method}"))?,
                path: path.to_owned(),
                binary: binary.clone(),
            });
        }
    }
    Ok(routes)
}

/// A function run on a schedule (`Schedule` events with `rate(...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSchedule {
    pub binary: String,
    pub every: std::time::Duration,
}

/// Every `Schedule` event of every function in the template.
pub fn template_schedules(template: &str) -> Result<Vec<TemplateSchedule>, String> {
    let doc: Value = serde_yaml::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let mut schedules = Vec::new();
    for (name, resource) in functions(&doc)? {
        let Some(events) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        for event in events.values() {
            if event.get("Type").and_then(Value::as_str) != Some("Schedule") {
                continue;
            }
            let expression = event
                .get("Properties")
                .and_then(|p| p.get("Schedule"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{name}: Schedule event without Schedule"))?;
            schedules.push(TemplateSchedule {
                binary: function_binary(resource)
                    .ok_or_else(|| format!("{name}: no Metadata.BuildProperties.Binary"))?,
                every: parse_rate(expression).ok_or_else(|| format!("{name}: unsupported schedule {expression:?}"))?,
            });
        }
    }
    Ok(schedules)
}

/// `rate(5 minutes)` and the like.
fn parse_rate(expression: &str) -> Option<std::time::Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok()?;
    let seconds = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(count * seconds))
}

/// The `AWS::Serverless::Function` resources, by logical name.
pub fn functions(doc: &Value) -> Result<Vec<(String, &Value)>, String> {
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or("template.yaml: no Resources")?;
    Ok(resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        .map(|(name, r)| (name.as_str().unwrap_or_default().to_owned(), r))
        .collect())
}

/// The binary a function resource builds.
pub fn function_binary(resource: &Value) -> Option<String> {
    resource
        .get("Metadata")?
        .get("BuildProperties")?
        .get("Binary")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: session-update
    Properties:
      Events:
        Api:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Method: put
            Path: /api/v1/metrics/session/{id}
"#;

    #[test]
    fn routes_are_read_from_function_events() {
        let routes = template_routes(TEMPLATE).unwrap();
        assert_eq!(
            routes,
            [TemplateRoute {
                method: Method::PUT,
                path: "/api/v1/metrics/session/{id}".into(),
                binary: "session-update".into(),
            }]
        );
        assert_eq!(routes[0].key(), "PUT /api/v1/metrics/session/{id}");
    }

    #[test]
    fn schedules_are_read_from_function_events() {
        let template = r#"
Resources:
  Reaper:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: session-reaper
    Properties:
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(5 minutes)
"#;
        assert_eq!(
            template_schedules(template).unwrap(),
            [TemplateSchedule {
                binary: "session-reaper".into(),
                every: std::time::Duration::from_secs(300),
            }]
        );
        assert_eq!(parse_rate("rate(1 hour)"), Some(std::time::Duration::from_secs(3600)));
        assert_eq!(parse_rate("cron(0 * * * ? *)"), None);
    }

    #[test]
    fn path_parameters_are_extracted() {
        let route = &template_routes(TEMPLATE).unwrap()[0];
        assert_eq!(
            route.matches(&Method::PUT, "/api/v1/metrics/session/abc"),
            Some(vec![("id".into(), "abc".into())])
        );
        assert_eq!(route.matches(&Method::POST, "/api/v1/metrics/session/abc"), None);
        assert_eq!(route.matches(&Method::PUT, "/api/v1/metrics/session/"), None);
        assert_eq!(route.matches(&Method::PUT, "/api/v1/metrics/session/a/b"), None);
    }
}
