//! Bearer-token authentication: one pinned algorithm per deployment, `exp` required, `nbf`
//! honoured, `iss`/`aud` checked when configured; a bearer starting with `mcsk_` is an API key,
//! checked by [`ApiKeyAuth`]. The organization, user and role come only from a verified token
//! or key. Tokens and keys are never logged.

use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, ConfigError, JwtKey};
use crate::domain::api_keys::KEY_PREFIX;
use crate::domain::ids::{Caller, OrgId, Role, UserId};
use crate::domain::validation::Choice;
use crate::http::api_keys::ApiKeyAuth;
use crate::http::jwks::{Jwks, JwksError};
use crate::http::verified_tokens::VerifiedTokens;

/// Longest token we try to decode; anything larger is refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing bearer token")]
    Missing,
    #[error("Authorization header must be 'Bearer <token>'")]
    Malformed,
    #[error("Invalid token")]
    Invalid,
    #[error("Token algorithm not accepted")]
    WrongAlgorithm,
    #[error("Token expired")]
    Expired,
    #[error("Token not yet valid")]
    NotYetValid,
    #[error("Token issuer not accepted")]
    WrongIssuer,
    #[error("Token audience not accepted")]
    WrongAudience,
    #[error("Token claim {claim} is missing or invalid: {problem}")]
    BadClaim { claim: &'static str, problem: String },
    #[error("Token header has no key id (kid)")]
    MissingKeyId,
    #[error("Token header marks extensions critical (crit); none is understood here")]
    CriticalExtension,
    #[error("Token signing key is not known")]
    UnknownKey,
    /// The issuer's key server cannot be read: not the client's fault (503).
    #[error("token keys unavailable: {0}")]
    KeysUnavailable(String),
    #[error("Malformed API key: expected mcsk_<32 hex>_<64 hex>")]
    MalformedKey,
    /// No such key or the wrong secret: one answer, so it never says whether the id exists.
    #[error("Invalid API key")]
    InvalidKey,
    #[error("API key revoked")]
    KeyRevoked,
    #[error("API key expired")]
    KeyExpired,
    /// The key store cannot be read: not the client's fault (503).
    #[error("API key store unavailable: {0}")]
    KeyStoreUnavailable(String),
}

pub struct Authenticator {
    /// The current key first, then the one being rotated out (none with a JWKS).
    keys: Vec<DecodingKey>,
    jwks: Option<Jwks>,
    validation: Validation,
    /// API keys, when the deployment has its keys table (every function that authenticates).
    api_keys: Option<ApiKeyAuth>,
    /// Tokens verified recently: a token is verified once per container, not per request.
    verified: VerifiedTokens,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    org_id: Option<serde_json::Value>,
    /// `admin` or `member`; a token without it names a member.
    #[serde(default)]
    role: Option<serde_json::Value>,
    /// Checked by the validation already; kept for who needs the token's lifetime.
    #[serde(default)]
    exp: Option<serde_json::Value>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        if let JwtKey::Jwks {
            url,
            es256,
            min_refresh,
            timeout,
        } = &config.key
        {
            let algorithm = if *es256 { Algorithm::ES256 } else { Algorithm::RS256 };
            return Ok(Self {
                keys: Vec::new(),
                jwks: Some(Jwks::new(url, algorithm, *min_refresh, *timeout)?),
                validation: validation(algorithm, config),
                api_keys: None,
                verified: VerifiedTokens::default(),
            });
        }
        let (algorithm, key) = decoding_key(&config.key, "JWT_PUBLIC_KEY")?;
        let mut keys = vec![key];
        if let Some(previous) = &config.previous {
            let (previous_algorithm, key) = decoding_key(previous, "JWT_PREVIOUS_PUBLIC_KEY")?;
            if previous_algorithm != algorithm {
                return Err(ConfigError::new(
                    "JWT_PREVIOUS_PUBLIC_KEY",
                    "must use the same algorithm as the current key",
                ));
            }
            keys.push(key);
        }
        Ok(Self {
            keys,
            jwks: None,
            validation: validation(algorithm, config),
            api_keys: None,
            verified: VerifiedTokens::default(),
        })
    }

    /// Also accepts the API keys `api_keys` checks.
    pub fn with_api_keys(mut self, api_keys: ApiKeyAuth) -> Self {
        self.api_keys = Some(api_keys);
        self
    }

    /// API keys read from their table on every request (see `ApiKeyAuth::uncached`).
    pub fn reading_keys_fresh(mut self) -> Self {
        self.api_keys = self.api_keys.map(ApiKeyAuth::uncached);
        self
    }

    /// The JWKS key source, when the deployment uses one.
    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_ref()
    }

    /// Verifies the `Authorization` header and returns who is calling.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        self.authenticate_until(headers).await.map(|(caller, _)| caller)
    }

    /// Like [`Authenticator::authenticate`], with the token's `exp` or the key's expiry (Unix
    /// seconds): a WebSocket connection lives no longer than the credential it was opened with.
    pub async fn authenticate_until(&self, headers: &HeaderMap) -> Result<(Caller, Option<i64>), AuthError> {
        let token = bearer_token(headers)?;
        if token.starts_with(KEY_PREFIX) {
            return match &self.api_keys {
                Some(api_keys) => api_keys.authenticate(token).await,
                None => Err(AuthError::InvalidKey),
            };
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid);
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some((caller, exp)) = self.verified.get(token, now, self.validation.leeway) {
            return Ok((caller, i64::try_from(exp).ok()));
        }
        let data = match &self.jwks {
            None => self.decode(token)?,
            Some(jwks) => self.verify_with_jwks(jwks, token).await?,
        };
        let exp = data.claims.exp.as_ref();
        let whole_seconds = exp.and_then(serde_json::Value::as_u64);
        let exp = exp.and_then(serde_json::Value::as_f64).map(|exp| exp as i64);
        let caller = caller(data)?;
        // `exp` is required, so a verified token has one; one that is not a whole number of
        // seconds is not remembered, only verified again each time.
        if let Some(until) = whole_seconds {
            self.verified.insert(token, &caller, until, now);
        }
        Ok((caller, exp))
    }

    /// Tokens remembered as verified (tests check what is and is not remembered).
    pub fn verified_tokens(&self) -> usize {
        self.verified.len()
    }

    /// Verifies a token against the configured static keys.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid);
        }
        caller(self.decode(token)?)
    }

    /// Verifies a token against the issuer's key set; its size was checked by the caller.
    async fn verify_with_jwks(&self, jwks: &Jwks, token: &str) -> Result<jsonwebtoken::TokenData<Claims>, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| map_jwt_error(e.kind()))?;
        refuse_critical_extensions(token)?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        let key = match jwks.key(&kid).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(AuthError::UnknownKey),
            Err(JwksError::Unavailable(detail)) => return Err(AuthError::KeysUnavailable(detail)),
        };
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| map_jwt_error(e.kind()))
    }
}

fn validation(algorithm: Algorithm, config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    // jsonwebtoken checks `iss` and `aud` only when the token carries them: a configured issuer
    // or audience must also make the claim required, or a token without it would pass.
    let mut required = vec!["exp"];
    if config.issuer.is_some() {
        required.push("iss");
    }
    if !config.audience.is_empty() {
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = config.leeway_seconds;
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
    }
    if config.audience.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&config.audience);
    }
    validation
}

/// The caller named by verified claims; both ids are checked before anything else sees them.
fn caller(data: jsonwebtoken::TokenData<Claims>) -> Result<Caller, AuthError> {
    let org = string_claim("org_id", data.claims.org_id)
        .and_then(|raw| OrgId::parse(&raw).map_err(|problem| bad("org_id", problem)))?;
    let user = string_claim("sub", data.claims.sub)
        .and_then(|raw| UserId::parse_identity(&raw).map_err(|problem| bad("sub", problem)))?;
    let role = match data.claims.role {
        None => Role::Member,
        Some(raw) => {
            let raw = string_claim("role", Some(raw))?;
            Role::parse(&raw).ok_or_else(|| bad("role", "must be \"admin\" or \"member\"".into()))?
        }
    };
    Ok(Caller { org, user, role })
}

/// RFC 7515 §4.1.11: a verifier must refuse a token whose header lists extensions in `crit`
/// that it does not understand, and this one understands none. (`jsonwebtoken` ignores header
/// fields it does not know, so the header is read here.) A header that is not base64url JSON is
/// left for the verification to refuse.
fn refuse_critical_extensions(token: &str) -> Result<(), AuthError> {
    use base64::Engine;
    let encoded = token.split('.').next().unwrap_or_default();
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
        return Ok(());
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes) {
        Ok(header) if header.contains_key("crit") => Err(AuthError::CriticalExtension),
        _ => Ok(()),
    }
}

impl Authenticator {
    /// Tries the current key, then the previous one; only a bad signature moves on to the next.
    fn decode(&self, token: &str) -> Result<jsonwebtoken::TokenData<Claims>, AuthError> {
        refuse_critical_extensions(token)?;
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(map_jwt_error(e.kind())),
            }
        }
        Err(AuthError::Invalid)
    }
}

fn decoding_key(key: &JwtKey, variable: &str) -> Result<(Algorithm, DecodingKey), ConfigError> {
    Ok(match key {
        JwtKey::Jwks { .. } => {
            return Err(ConfigError::new(variable, "a JWKS URL cannot be a previous key"));
        }
        JwtKey::Hs256 { secret } => (Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes())),
        JwtKey::Rs256 { public_key_pem } => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
                .map_err(|e| ConfigError::new(variable, format!("not an RSA public key: {e}")))?,
        ),
        JwtKey::Es256 { public_key_pem } => (
            Algorithm::ES256,
            DecodingKey::from_ec_pem(public_key_pem.as_bytes())
                .map_err(|e| ConfigError::new(variable, format!("not an EC public key: {e}")))?,
        ),
    })
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

fn string_claim(name: &'static str, value: Option<serde_json::Value>) -> Result<String, AuthError> {
    match value {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(bad(name, "must be a string".into())),
        None => Err(bad(name, "is required".into())),
    }
}

fn bad(claim: &'static str, problem: String) -> AuthError {
    AuthError::BadClaim { claim, problem }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            AuthError::WrongAlgorithm
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => AuthError::BadClaim {
            claim: "exp",
            problem: "is required".into(),
        },
        _ => AuthError::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "unit-test-secret-0123456789";

    // Test-only key pairs, generated for these tests and used nowhere else.
    const RSA_PRIVATE: &str = include_str!("../../testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../../testdata/rsa_public.pem");
    const RSA_OTHER_PRIVATE: &str = include_str!("../../testdata/rsa_other_private.pem");
    const EC_PRIVATE: &str = include_str!("../../testdata/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("../../testdata/ec_public.pem");

    fn config(key: JwtKey) -> AuthConfig {
        AuthConfig {
            key,
            previous: None,
            issuer: None,
            audience: vec![],
            leeway_seconds: 0,
        }
    }

    fn hs256() -> Authenticator {
        Authenticator::new(&config(JwtKey::Hs256 { secret: SECRET.into() })).unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims() -> serde_json::Value {
        json!({"sub": "alice", "org_id": "acme", "exp": now() + 600})
    }

    fn sign_hs(claims: &serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// `authenticate` for static keys, without a runtime.
    fn authenticate(auth: &Authenticator, headers: &HeaderMap) -> Result<Caller, AuthError> {
        bearer_token(headers).and_then(|token| auth.verify(token))
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn a_valid_token_yields_the_caller() {
        let caller = authenticate(&hs256(), &headers(&format!("Bearer {}", sign_hs(&claims(), SECRET)))).unwrap();
        assert_eq!(caller.org.as_str(), "acme");
        assert_eq!(caller.user.as_str(), "alice");
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let token = sign_hs(&claims(), SECRET);
        assert!(authenticate(&hs256(), &headers(&format!("bearer {token}"))).is_ok());
    }

    #[test]
    fn a_missing_header_is_refused() {
        assert_eq!(authenticate(&hs256(), &HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(authenticate(&hs256(), &headers("Bearer ")), Err(AuthError::Missing));
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        assert_eq!(
            authenticate(&hs256(), &headers("Basic YWxhZGRpbjpvcGVu")),
            Err(AuthError::Malformed)
        );
        assert_eq!(authenticate(&hs256(), &headers("Bearer")), Err(AuthError::Missing));
        assert_eq!(authenticate(&hs256(), &headers("Token abc")), Err(AuthError::Malformed));
        assert_eq!(
            authenticate(&hs256(), &headers("Bearer not.a.jwt")),
            Err(AuthError::Invalid)
        );
        assert_eq!(authenticate(&hs256(), &headers("Bearer abc")), Err(AuthError::Invalid));
    }

    #[test]
    fn an_oversized_token_is_refused_unread() {
        let token = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(hs256().verify(&token), Err(AuthError::Invalid));
    }

    #[test]
    fn alg_none_is_refused() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(claims().to_string().as_bytes());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            assert!(hs256().verify(&token).is_err(), "{token}");
        }
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn a_token_with_critical_extensions_is_refused_though_its_signature_is_good() {
        // GIVEN a token signed with the right secret whose header marks an extension critical
        let signed = |header: &str| {
            let message = format!("{}.{}", b64(header.as_bytes()), b64(claims().to_string().as_bytes()));
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
            format!("{message}.{signature}")
        };
        let critical = signed(r#"{"alg":"HS256","typ":"JWT","crit":["exp-policy"],"exp-policy":1}"#);
        // THEN it is refused, and the same token without `crit` is accepted
        assert_eq!(hs256().verify(&critical), Err(AuthError::CriticalExtension));
        assert!(hs256().verify(&signed(r#"{"alg":"HS256","typ":"JWT"}"#)).is_ok());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = sign_hs(&claims(), "some-other-secret-0123456789");
        assert_eq!(hs256().verify(&token), Err(AuthError::Invalid));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let token = sign_hs(&claims(), SECRET);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(json!({"sub": "alice", "org_id": "victim", "exp": now() + 600})
            .to_string()
            .as_bytes());
        parts[1] = &forged;
        assert_eq!(hs256().verify(&parts.join(".")), Err(AuthError::Invalid));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let mut c = claims();
        c["exp"] = json!(now() - 10);
        assert_eq!(hs256().verify(&sign_hs(&c, SECRET)), Err(AuthError::Expired));
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let c = json!({"sub": "alice", "org_id": "acme"});
        assert!(matches!(
            hs256().verify(&sign_hs(&c, SECRET)),
            Err(AuthError::BadClaim { claim: "exp", .. })
        ));
    }

    #[test]
    fn a_future_nbf_is_refused() {
        let mut c = claims();
        c["nbf"] = json!(now() + 300);
        assert_eq!(hs256().verify(&sign_hs(&c, SECRET)), Err(AuthError::NotYetValid));
        c["nbf"] = json!(now() - 5);
        assert!(hs256().verify(&sign_hs(&c, SECRET)).is_ok());
    }

    #[test]
    fn missing_or_hostile_org_id_is_refused() {
        for org in [
            json!(null),
            json!(42),
            json!(""),
            json!("acme\"; DROP TABLE x; --"),
            json!("a/b"),
        ] {
            let mut c = claims();
            c["org_id"] = org.clone();
            assert!(
                matches!(
                    hs256().verify(&sign_hs(&c, SECRET)),
                    Err(AuthError::BadClaim { claim: "org_id", .. })
                ),
                "{org}"
            );
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("org_id");
        assert!(matches!(
            hs256().verify(&sign_hs(&c, SECRET)),
            Err(AuthError::BadClaim { claim: "org_id", .. })
        ));
    }

    #[test]
    fn missing_sub_is_refused() {
        let mut c = claims();
        c.as_object_mut().unwrap().remove("sub");
        assert!(matches!(
            hs256().verify(&sign_hs(&c, SECRET)),
            Err(AuthError::BadClaim { claim: "sub", .. })
        ));
    }

    #[test]
    fn the_role_claim_names_admins_and_defaults_to_member() {
        let caller = hs256().verify(&sign_hs(&claims(), SECRET)).unwrap();
        assert_eq!(caller.role, Role::Member);
        for (role, expected) in [("admin", Role::Admin), ("member", Role::Member)] {
            let mut c = claims();
            c["role"] = json!(role);
            assert_eq!(hs256().verify(&sign_hs(&c, SECRET)).unwrap().role, expected);
        }
        for hostile in [json!("Admin"), json!("owner"), json!(""), json!(1), json!(["admin"])] {
            let mut c = claims();
            c["role"] = hostile.clone();
            assert!(
                matches!(
                    hs256().verify(&sign_hs(&c, SECRET)),
                    Err(AuthError::BadClaim { claim: "role", .. })
                ),
                "{hostile}"
            );
        }
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let mut cfg = config(JwtKey::Hs256 { secret: SECRET.into() });
        cfg.issuer = Some("https://issuer.example".into());
        cfg.audience = vec!["metrics".into()];
        let auth = Authenticator::new(&cfg).unwrap();

        let mut c = claims();
        c["iss"] = json!("https://issuer.example");
        c["aud"] = json!("metrics");
        assert!(auth.verify(&sign_hs(&c, SECRET)).is_ok());

        c["iss"] = json!("https://evil.example");
        assert_eq!(auth.verify(&sign_hs(&c, SECRET)), Err(AuthError::WrongIssuer));

        c["iss"] = json!("https://issuer.example");
        c["aud"] = json!("other");
        assert_eq!(auth.verify(&sign_hs(&c, SECRET)), Err(AuthError::WrongAudience));

        // A configured claim is required: leaving it out is no way around the check.
        c["aud"] = json!("metrics");
        let mut no_issuer = c.clone();
        no_issuer.as_object_mut().unwrap().remove("iss");
        assert_eq!(auth.verify(&sign_hs(&no_issuer, SECRET)), Err(AuthError::WrongIssuer));
        let mut no_audience = c.clone();
        no_audience.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            auth.verify(&sign_hs(&no_audience, SECRET)),
            Err(AuthError::WrongAudience)
        );
    }

    fn rs256() -> Authenticator {
        Authenticator::new(&config(JwtKey::Rs256 {
            public_key_pem: RSA_PUBLIC.into(),
        }))
        .unwrap()
    }

    fn sign_rs(claims: &serde_json::Value, private_pem: &str) -> String {
        encode(
            &Header::new(Algorithm::RS256),
            claims,
            &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn rs256_accepts_its_key_and_refuses_another() {
        assert!(rs256().verify(&sign_rs(&claims(), RSA_PRIVATE)).is_ok());
        assert_eq!(
            rs256().verify(&sign_rs(&claims(), RSA_OTHER_PRIVATE)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused_by_an_rs256_deployment() {
        // The classic algorithm-confusion attack: use the public key as an HMAC secret.
        let token = sign_hs(&claims(), RSA_PUBLIC);
        assert_eq!(rs256().verify(&token), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn rs256_token_is_refused_by_an_hs256_deployment() {
        assert_eq!(
            hs256().verify(&sign_rs(&claims(), RSA_PRIVATE)),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn es256_accepts_its_key() {
        let auth = Authenticator::new(&config(JwtKey::Es256 {
            public_key_pem: EC_PUBLIC.into(),
        }))
        .unwrap();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &claims(),
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(auth.verify(&token).is_ok());
        assert_eq!(
            auth.verify(&sign_hs(&claims(), EC_PUBLIC)),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn during_a_rotation_the_previous_key_is_still_accepted() {
        let mut cfg = config(JwtKey::Hs256 {
            secret: "the-new-secret-0123456789".into(),
        });
        cfg.previous = Some(JwtKey::Hs256 { secret: SECRET.into() });
        let auth = Authenticator::new(&cfg).unwrap();
        assert!(auth.verify(&sign_hs(&claims(), "the-new-secret-0123456789")).is_ok());
        assert!(
            auth.verify(&sign_hs(&claims(), SECRET)).is_ok(),
            "old tokens keep working"
        );
        assert_eq!(
            auth.verify(&sign_hs(&claims(), "a-third-secret-0123456789")),
            Err(AuthError::Invalid)
        );
        let mut expired = claims();
        expired["exp"] = json!(now() - 10);
        assert_eq!(auth.verify(&sign_hs(&expired, SECRET)), Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn a_token_is_verified_once_and_only_that_exact_token_is_remembered() {
        // GIVEN a container that has verified alice's token once
        let auth = hs256();
        let token = sign_hs(&claims(), SECRET);
        let (first, exp) = auth
            .authenticate_until(&headers(&format!("Bearer {token}")))
            .await
            .unwrap();
        assert_eq!(auth.verified_tokens(), 1);
        // WHEN the same token comes again THEN it names the same caller and expiry
        let again = auth.authenticate_until(&headers(&format!("Bearer {token}"))).await;
        assert_eq!(again, Ok((first.clone(), exp)));
        // AND a token differing in its signature, its claims or its length is checked in full
        // and refused, and nothing refused is remembered
        let mut forged_signature = token.clone();
        let last = forged_signature.pop().unwrap();
        forged_signature.push(if last == 'A' { 'B' } else { 'A' });
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let admin = b64(
            json!({"sub": "alice", "org_id": "acme", "role": "admin", "exp": now() + 600})
                .to_string()
                .as_bytes(),
        );
        let forged_claims = format!("{header}.{admin}.{signature}");
        let mut expired = claims();
        expired["exp"] = json!(now() - 10);
        for (refused, why) in [
            (forged_signature, AuthError::Invalid),
            (forged_claims, AuthError::Invalid),
            (format!("{token}x"), AuthError::Invalid),
            (sign_hs(&expired, SECRET), AuthError::Expired),
        ] {
            let answer = auth.authenticate_until(&headers(&format!("Bearer {refused}"))).await;
            assert_eq!(answer, Err(why), "{refused}");
        }
        // AND a well-signed token whose claims the service refuses is not remembered either
        let mut hostile_org = claims();
        hostile_org["org_id"] = json!("../other");
        let answer = auth
            .authenticate_until(&headers(&format!("Bearer {}", sign_hs(&hostile_org, SECRET))))
            .await;
        assert!(
            matches!(answer, Err(AuthError::BadClaim { claim: "org_id", .. })),
            "{answer:?}"
        );
        assert_eq!(auth.verified_tokens(), 1);
        // AND a token whose exp is not a whole number of seconds is verified every time
        let mut fractional = claims();
        fractional["exp"] = json!(now() as f64 + 600.5);
        let fractional = sign_hs(&fractional, SECRET);
        for _ in 0..2 {
            assert!(
                auth.authenticate_until(&headers(&format!("Bearer {fractional}")))
                    .await
                    .is_ok()
            );
        }
        assert_eq!(auth.verified_tokens(), 1);
    }

    #[test]
    fn a_malformed_public_key_fails_at_start() {
        let err = Authenticator::new(&config(JwtKey::Rs256 {
            public_key_pem: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into(),
        }))
        .err()
        .unwrap();
        assert_eq!(err.variable, "JWT_PUBLIC_KEY");
    }
}
