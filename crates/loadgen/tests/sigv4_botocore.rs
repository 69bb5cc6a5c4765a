//! servebench's SigV4 signatures equal botocore's (`botocore.auth.SigV4Auth`,
//! the reference the AWS CLI and boto3 sign with) for the same credentials,
//! time and request: both runtime paths, temporary credentials, non-ASCII
//! bodies, endpoint names that need percent-encoding, and the control plane.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use servebench_loadgen::api::sagemaker::{EndpointRef, SIGNING_SERVICE};
use servebench_loadgen::aws::{AwsSigner, Credentials};
use support::skip;

struct Case {
    name: &'static str,
    url: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    token: Option<&'static str>,
    region: &'static str,
    /// Seconds since the Unix epoch.
    time: u64,
}

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const JSON: (&str, &str) = ("content-type", "application/json");

fn runtime(name: &str, region: &str, root: Option<&str>, stream: bool) -> String {
    let base = EndpointRef::parse(&format!("sagemaker://{name}"))
        .unwrap()
        .base_url(root, region)
        .unwrap();
    let path = if stream {
        "/invocations-response-stream"
    } else {
        "/invocations"
    };
    format!("{base}{path}")
}

fn cases() -> Vec<Case> {
    let tgi = br#"{"inputs":"What is Deep Learning?","parameters":{"max_new_tokens":50,"details":true,"do_sample":false},"stream":false}"#.to_vec();
    let t0 = 1_700_000_000; // 2023-11-14T22:13:20Z
    vec![
        Case {
            name: "invocations",
            url: runtime("llama-2-7b", "us-west-2", None, false),
            headers: vec![JSON],
            body: tgi.clone(),
            token: None,
            region: "us-west-2",
            time: t0,
        },
        Case {
            name: "invocations-response-stream",
            url: runtime("llama-2-7b", "us-west-2", None, true),
            headers: vec![JSON],
            body: tgi.clone(),
            token: None,
            region: "us-west-2",
            time: t0 + 1,
        },
        Case {
            name: "session token",
            url: runtime("llama-2-13b", "us-east-1", None, false),
            headers: vec![JSON],
            body: tgi.clone(),
            token: Some("IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="),
            region: "us-east-1",
            time: t0 + 3600,
        },
        Case {
            name: "session token, streaming",
            url: runtime("llama-2-13b", "us-east-1", None, true),
            headers: vec![JSON],
            body: tgi.clone(),
            token: Some("FwoGZXIvYXdzEXAMPLE+token/with=padding"),
            region: "us-east-1",
            time: t0 + 7200,
        },
        Case {
            name: "non-ASCII body",
            url: runtime("llama-2-70b", "eu-west-1", None, true),
            headers: vec![JSON],
            body: json!({"inputs": "Grüße aus Köln – 日本語で答えて 🙂", "stream": true})
                .to_string()
                .into_bytes(),
            token: None,
            region: "eu-west-1",
            time: t0 + 86_400,
        },
        Case {
            name: "endpoint name needing percent-encoding",
            url: runtime("my endpoint+v2/ü~x", "us-west-2", None, false),
            headers: vec![JSON],
            body: tgi.clone(),
            token: None,
            region: "us-west-2",
            time: t0 + 5,
        },
        Case {
            name: "loopback runtime with a port",
            url: runtime("bench", "us-west-2", Some("http://127.0.0.1:4599"), true),
            headers: vec![JSON],
            body: tgi.clone(),
            token: Some("loopback-token"),
            region: "us-west-2",
            time: t0 + 9,
        },
        Case {
            name: "control plane: CreateEndpoint",
            url: "https://api.sagemaker.us-west-2.amazonaws.com/".into(),
            headers: vec![
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "SageMaker.CreateEndpoint"),
            ],
            body: br#"{"EndpointName":"servebench-llama-2-7b","EndpointConfigName":"servebench-llama-2-7b"}"#
                .to_vec(),
            token: None,
            region: "us-west-2",
            time: t0 + 60,
        },
        Case {
            name: "control plane with a session token: DescribeEndpoint",
            url: "https://api.sagemaker.ap-northeast-1.amazonaws.com/".into(),
            headers: vec![
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "SageMaker.DescribeEndpoint"),
            ],
            body: br#"{"EndpointName":"e"}"#.to_vec(),
            token: Some("control-plane-token"),
            region: "ap-northeast-1",
            time: t0 + 120,
        },
        Case {
            name: "empty body",
            url: runtime("e", "us-west-2", None, false),
            headers: vec![JSON],
            body: Vec::new(),
            token: None,
            region: "us-west-2",
            time: t0 + 11,
        },
    ]
}

fn botocore(requests: &Value) -> Option<Vec<Value>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/sigv4_ref.py");
    let mut child = match Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            skip(&format!("python3 cannot run: {e}"));
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(requests.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        skip("botocore is not installed (pip install botocore==1.43.11)");
        return None;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn authorization_headers_equal_botocores() {
    let cases = cases();
    assert!(cases.len() >= 8);
    let mut ours = Vec::new();
    let mut requests = Vec::new();
    for c in &cases {
        let creds = Credentials::new(KEY_ID, SECRET, c.token.map(str::to_string), None, "test");
        let service = if c.url.contains("api.sagemaker") {
            "sagemaker"
        } else {
            SIGNING_SERVICE
        };
        let signer = AwsSigner::with_credentials(creds.clone(), c.region, service);
        let time = UNIX_EPOCH + Duration::from_secs(c.time);
        let signed = signer
            .sign(&creds, time, "POST", &c.url, &c.headers, &c.body)
            .unwrap();
        let get = |name: &str| {
            signed
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        ours.push((
            get("authorization").expect("an authorization header"),
            get("x-amz-date"),
            get("x-amz-security-token"),
        ));
        requests.push(json!({
            "method": "POST",
            "url": c.url,
            "headers": c.headers,
            "body": c.body,
            "access_key": KEY_ID,
            "secret_key": SECRET,
            "token": c.token,
            "service": service,
            "region": c.region,
            "time": c.time,
        }));
    }
    let Some(reference) = botocore(&Value::Array(requests)) else {
        return;
    };
    for ((c, (auth, date, token)), want) in cases.iter().zip(&ours).zip(&reference) {
        assert_eq!(auth, &want["authorization"], "{}: {}", c.name, c.url);
        assert_eq!(date.as_deref(), want["x_amz_date"].as_str(), "{}", c.name);
        assert_eq!(
            token.as_deref(),
            want["x_amz_security_token"].as_str(),
            "{}",
            c.name
        );
    }
    // A different secret signs differently: the comparison can fail.
    let c = &cases[0];
    let other = Credentials::new(KEY_ID, "another-secret", None, None, "test");
    let signed = AwsSigner::with_credentials(other.clone(), c.region, SIGNING_SERVICE)
        .sign(
            &other,
            UNIX_EPOCH + Duration::from_secs(c.time),
            "POST",
            &c.url,
            &c.headers,
            &c.body,
        )
        .unwrap();
    assert!(signed
        .iter()
        .all(|(_, v)| v != &reference[0]["authorization"]));
}
