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
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or("template.yaml: no Resources")?;
    let mut routes = Vec::new();
    for (name, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or_default();
        let Some(events) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        let binary = function_binary(resource)
            .ok_or_else(|| format!("{name}: no Metadata.BuildProperties.Binary"))?;
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
    fn path_parameters_are_extracted() {
        let route = &template_routes(TEMPLATE).unwrap()[0];
        assert_eq!(
            route.matches(&Method::PUT, "/api/v1/metrics/session/abc"),
            Some(vec![("id".into(), "abc".into())])
        );
        assert_eq!(
            route.matches(&Method::POST, "/api/v1/metrics/session/abc"),
            None
        );
        assert_eq!(
            route.matches(&Method::PUT, "/api/v1/metrics/session/"),
            None
        );
        assert_eq!(
            route.matches(&Method::PUT, "/api/v1/metrics/session/a/b"),
            None
        );
    }
}
