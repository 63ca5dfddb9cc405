//! The rate limiter's direct DynamoDB client signs requests exactly as botocore (an independent
//! SigV4 implementation) does; moto does not check signatures, so this is what proves them.

use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use shared::adapters::dynamodb::client::DynamoHttp;

const BOTOCORE: &str = r#"
import sys, botocore.auth, botocore.credentials, botocore.awsrequest
key, secret, token, region, target, body, timestamp = sys.argv[1:8]
request = botocore.awsrequest.AWSRequest(method="POST", url=f"https://dynamodb.{region}.amazonaws.com/", data=body.encode(),
    headers={"host": f"dynamodb.{region}.amazonaws.com", "content-type": "application/x-amz-json-1.0", "x-amz-target": target})
auth = botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret, token), "dynamodb", region)
request.context["timestamp"] = timestamp
auth._modify_request_before_signing(request)
print(auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request))
"#;

#[test]
fn signatures_match_botocore() {
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("the-token".into()),
        None,
        "test",
    );
    let sdk = SdkConfig::builder()
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
        .behavior_version(BehaviorVersion::latest())
        .build();
    let client = DynamoHttp::new(&sdk, &shared::config::DynamoDbConfig::default()).unwrap();
    let body = r#"{"TableName":"metrics-rate-limits-prod","Key":{"pk":{"S":"org#acme"}}}"#;
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_757_327_400);
    let request = client
        .signed_request("UpdateItem", body.as_bytes().to_vec(), &credentials, time)
        .unwrap();
    let authorization = request.headers()["authorization"].to_str().unwrap();
    let ours = authorization.rsplit("Signature=").next().unwrap();

    let output = std::process::Command::new(integration_tests::venv_python())
        .args([
            "-c",
            BOTOCORE,
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "the-token",
        ])
        .args(["eu-west-1", "DynamoDB_20120810.UpdateItem", body, "20250908T103000Z"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(ours, String::from_utf8(output.stdout).unwrap().trim());
}
