//! The `nodereaper` binary as a Lambda function, driven through the Lambda
//! Runtime API against goiardi and moto.
//!
//! The Runtime API is a small server in this test that follows the documented
//! protocol (AWS Lambda developer guide, "Using the Lambda runtime API for
//! custom runtimes", API version 2018-06-01): `GET
//! /2018-06-01/runtime/invocation/next` answers the event with the
//! `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn` and
//! `-Trace-Id` headers; the function posts the result to
//! `/runtime/invocation/{id}/response` or `/error`, and init failures to
//! `/runtime/init/error`. It is not cargo lambda's emulator: this server
//! records when the function first asks for an event, which is how the cold
//! start (init duration) is measured.

mod common;

use std::collections::{HashMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};

#[derive(Default)]
struct ApiState {
    pending: VecDeque<(String, Value)>,
    results: HashMap<String, (String, Value)>,
    first_next: Option<Instant>,
    init_error: Option<Value>,
}

/// The Runtime API side of one function instance.
struct RuntimeApi {
    addr: String,
    state: Arc<Mutex<ApiState>>,
    wake: Arc<tokio::sync::Notify>,
    served: Arc<tokio::sync::Notify>,
}

impl RuntimeApi {
    async fn start() -> Self {
        use axum::{
            body::Bytes,
            extract::{Path, State},
            http::{HeaderMap, HeaderValue, StatusCode},
            response::IntoResponse,
            routing::{get, post},
            Router,
        };
        type S = (
            Arc<Mutex<ApiState>>,
            Arc<tokio::sync::Notify>,
            Arc<tokio::sync::Notify>,
        );
        async fn next(State((state, wake, _)): State<S>) -> impl IntoResponse {
            loop {
                let notified = wake.notified();
                {
                    let mut s = state.lock().unwrap();
                    s.first_next.get_or_insert_with(Instant::now);
                    if let Some((id, event)) = s.pending.pop_front() {
                        let mut h = HeaderMap::new();
                        let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
                        h.insert(
                            "Lambda-Runtime-Aws-Request-Id",
                            HeaderValue::from_str(&id).unwrap(),
                        );
                        h.insert("Lambda-Runtime-Deadline-Ms", HeaderValue::from(deadline));
                        h.insert(
                            "Lambda-Runtime-Invoked-Function-Arn",
                            HeaderValue::from_static(
                                "arn:aws:lambda:us-east-1:123456789012:function:nodereaper",
                            ),
                        );
                        h.insert(
                            "Lambda-Runtime-Trace-Id",
                            HeaderValue::from_static("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"),
                        );
                        h.insert("Content-Type", HeaderValue::from_static("application/json"));
                        return (StatusCode::OK, h, event.to_string());
                    }
                }
                notified.await;
            }
        }
        async fn result(
            State((state, _, served)): State<S>,
            Path((id, kind)): Path<(String, String)>,
            body: Bytes,
        ) -> impl IntoResponse {
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            state.lock().unwrap().results.insert(id, (kind, value));
            served.notify_waiters();
            (StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
        }
        async fn init_error(State((state, _, served)): State<S>, body: Bytes) -> impl IntoResponse {
            state.lock().unwrap().init_error =
                Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
            served.notify_waiters();
            (StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
        }
        let state = Arc::new(Mutex::new(ApiState::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let served = Arc::new(tokio::sync::Notify::new());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/:id/:kind", post(result))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state((state.clone(), wake.clone(), served.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            state,
            wake,
            served,
        }
    }

    /// Delivers one event and waits for the function's answer:
    /// ("response" | "error", payload).
    async fn invoke(&self, event: Value) -> (String, Value) {
        let id = format!("req-{:08x}", rand::random::<u32>());
        self.state
            .lock()
            .unwrap()
            .pending
            .push_back((id.clone(), event));
        self.wake.notify_waiters();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let served = self.served.notified();
            if let Some(r) = self.state.lock().unwrap().results.remove(&id) {
                return r;
            }
            assert!(Instant::now() < deadline, "no answer to {id} within 90 s");
            let _ = tokio::time::timeout(Duration::from_millis(500), served).await;
        }
    }

    fn first_next(&self) -> Option<Instant> {
        self.state.lock().unwrap().first_next
    }
}

/// The function process; killed on drop.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    queue: String,
    dlq: String,
    bucket: String,
    secret: String,
}

/// A queue + DLQ, a journal bucket and the admin key in Secrets Manager, in moto.
async fn setup(prefix: &str) -> Setup {
    let (queue, dlq) = queue_with_dlq(&unique(prefix), 5).await;
    let sdk = aws().await;
    let (_, bucket) = s3_bucket("journal").await;
    let secret = unique("nodereaper/chef-key");
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&secret)
        .secret_string(admin_key_pem())
        .send()
        .await
        .expect("secret");
    Setup {
        queue,
        dlq,
        bucket,
        secret,
    }
}

/// Starts the binary as the function's bootstrap would be started.
fn start_function(api: &RuntimeApi, s: &Setup, args: &[&str], chef_url: &str) -> Function {
    start_function_with(api, s, args, Some(chef_url), &[])
}

/// The same, with more environment variables; without `chef_url` the Chef
/// servers come from the configuration file (`NODEREAPER_CONFIG` in `env`).
fn start_function_with(
    api: &RuntimeApi,
    s: &Setup,
    args: &[&str],
    chef_url: Option<&str>,
    env: &[(&str, &str)],
) -> Function {
    let st = stack();
    let chef_url = chef_url.map(|url| ("NODEREAPER_CHEF_SERVER_URL", url));
    let child = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", "nodereaper")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/nodereaper")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", st.moto_url())
        .envs(chef_url)
        // goiardi on 127.0.0.1 speaks plain http.
        .env("NODEREAPER_CHEF_ALLOW_PLAIN_HTTP", "true")
        .env("NODEREAPER_CHEF_CLIENT_NAME", "admin")
        .env("NODEREAPER_CHEF_CLIENT_KEY_SECRET", &s.secret)
        .env("NODEREAPER_QUEUE_URL", &s.queue)
        .env("NODEREAPER_JOURNAL_S3_BUCKET", &s.bucket)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .spawn()
        .expect("start nodereaper");
    Function(child)
}

/// Sends bodies to the queue and receives them back, as the event source
/// mapping does, into an SQS event (shape from the Lambda developer guide,
/// "Using Lambda with Amazon SQS").
async fn sqs_event(queue: &str, bodies: &[String]) -> (Value, HashMap<String, String>) {
    for b in bodies {
        send(queue, b).await;
    }
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let arn = queue_arn(queue).await;
    let mut records = Vec::new();
    let mut by_body = HashMap::new();
    while records.len() < bodies.len() {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .visibility_timeout(120)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            let attrs: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            let id = m.message_id().expect("id").to_string();
            by_body.insert(m.body().expect("body").to_string(), id.clone());
            records.push(json!({
                "messageId": id,
                "receiptHandle": m.receipt_handle().expect("receipt"),
                "body": m.body().expect("body"),
                "attributes": attrs,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }));
        }
    }
    (json!({ "Records": records }), by_body)
}

/// An SNS event as Lambda delivers a topic's message to a subscribed function.
fn sns_event(message: &str) -> Value {
    json!({"Records": [{
        "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:nodereaper:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "EventSource": "aws:sns",
        "Sns": {
            "SignatureVersion": "1",
            "Timestamp": chrono::Utc::now().to_rfc3339(),
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "MessageId": format!("{:08x}-sns", rand::random::<u32>()),
            "Message": message,
            "MessageAttributes": {},
            "Type": "Notification",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:nodereaper",
            "Subject": "Auto Scaling: termination"
        }
    }]})
}

/// "EC2 Instance Terminate Successful" as EventBridge delivers it to a target.
fn eventbridge_event(instance_id: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("{:08x}-1234-1234-1234-123456789012", rand::random::<u32>()),
        "detail-type": "EC2 Instance Terminate Successful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "StatusCode": "InProgress",
            "AutoScalingGroupName": "web-asg",
            "ActivityId": "87654321-4321-4321-4321-210987654321",
            "RequestId": "12345678-1234-1234-1234-123456789012",
            "StatusMessage": "",
            "EndTime": "2026-11-25T10:00:00Z",
            "EC2InstanceId": instance_id,
            "StartTime": "2026-11-25T09:59:00Z",
            "Cause": "description-text",
            "Details": {"Availability Zone": "us-east-1a", "Subnet ID": "subnet-12345678"}
        }
    })
}

async fn registered(chef: &nodereaper::adapters::chef::ChefClient, name: &str) -> (bool, bool) {
    (
        chef.get_node(name).await.expect("node").is_some(),
        chef.get_client(name).await.expect("client").is_some(),
    )
}

/// The DLQ's messages: reason by body.
async fn dlq_reasons(dlq: &str) -> HashMap<String, String> {
    dead_letters(dlq).await.into_iter().collect()
}

async fn journal_objects(bucket: &str) -> usize {
    s3().await
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list")
        .key_count()
        .unwrap_or(0) as usize
}

#[tokio::test]
async fn sqs_batch_sns_and_eventbridge_through_the_runtime_api() {
    let chef = admin();
    let s = setup("lambda").await;
    let api = RuntimeApi::start().await;
    let started = Instant::now();
    // Started without a command: AWS_LAMBDA_RUNTIME_API selects Lambda mode.
    let _function = start_function(&api, &s, &[], stack().chef_url());

    // Instances: terminated ones (really gone) and one still running.
    let ids = run_instances(4).await;
    let (gone, eb_gone, sns_gone, running) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    terminate_instances(&[gone.clone(), eb_gone.clone(), sns_gone.clone()]).await;
    for id in &ids {
        register(&chef, &format!("n-{id}"), Some(id)).await;
    }

    // Cold start: process start until it first asks for an event. Nothing
    // is fetched at init (the key, the queue and the clients wait for the
    // first event), so this is the binary's own start-up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.first_next().is_none() {
        assert!(Instant::now() < deadline, "the function never polled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let init = api.first_next().unwrap() - started;
    println!("cold start (init duration): {} ms", init.as_millis());
    assert!(init < Duration::from_secs(5), "init took {init:?}");

    // SQS: a terminated instance, a running instance (forged event) and a poison body.
    let terminated_body = sns_wrap(&asg_terminate_notification(gone, "web-asg"));
    let forged_body = sns_wrap(&asg_terminate_notification(running, "web-asg"));
    let poison_body = "this is not an Auto Scaling event".to_string();
    let (event, ids_by_body) = sqs_event(
        &s.queue,
        &[
            terminated_body.clone(),
            forged_body.clone(),
            poison_body.clone(),
        ],
    )
    .await;
    let t0 = Instant::now();
    let (kind, answer) = api.invoke(event).await;
    println!(
        "first SQS invocation (3 records): {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(kind, "response", "{answer}");
    // Refused and poison records went to the DLQ with their reason and are
    // not failures: nothing is left for the queue to redeliver.
    assert_eq!(answer, json!({"batchItemFailures": []}), "{answer}");
    assert_eq!(
        registered(&chef, &format!("n-{gone}")).await,
        (false, false)
    );
    assert_eq!(
        registered(&chef, &format!("n-{running}")).await,
        (true, true)
    );
    assert_eq!(
        registered(&chef, &format!("n-{eb_gone}")).await,
        (true, true)
    );
    let dlq = dlq_reasons(&s.dlq).await;
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert!(
        dlq[&forged_body].contains(running.as_str()) && dlq[&forged_body].contains("running"),
        "{dlq:?}"
    );
    assert!(!dlq[&poison_body].is_empty(), "{dlq:?}");
    assert!(!dlq.contains_key(&terminated_body));
    assert!(ids_by_body.contains_key(&terminated_body));
    assert_eq!(journal_objects(&s.bucket).await, 1, "one backup in S3");

    // EventBridge, delivered directly.
    let t0 = Instant::now();
    let (kind, answer) = api.invoke(eventbridge_event(eb_gone)).await;
    println!("EventBridge invocation: {} ms", t0.elapsed().as_millis());
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(answer["outcomes"][0]["disposition"], "delete", "{answer}");
    assert_eq!(
        registered(&chef, &format!("n-{eb_gone}")).await,
        (false, false)
    );

    // SNS, the topic subscribed to the function: the terminated instance...
    let (kind, answer) = api
        .invoke(sns_event(&asg_terminate_notification(sns_gone, "web-asg")))
        .await;
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(answer["outcomes"][0]["disposition"], "delete", "{answer}");
    assert_eq!(
        registered(&chef, &format!("n-{sns_gone}")).await,
        (false, false)
    );
    // ...and a forged one for the running instance: refused, to the DLQ.
    let forged = asg_terminate_notification(running, "other-asg");
    let (kind, answer) = api.invoke(sns_event(&forged)).await;
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(
        answer["outcomes"][0]["disposition"], "dead_letter",
        "{answer}"
    );
    assert_eq!(
        registered(&chef, &format!("n-{running}")).await,
        (true, true)
    );
    assert!(dlq_reasons(&s.dlq).await.contains_key(&forged));
    assert_eq!(journal_objects(&s.bucket).await, 3);

    // An event that is none of the three: the invocation fails, naming why.
    let (kind, answer) = api.invoke(json!({"hello": "world"})).await;
    assert_eq!(kind, "error");
    assert!(
        answer["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("expected an SQS or SNS event"),
        "{answer}"
    );
}

#[tokio::test]
async fn transient_failure_fails_only_that_record() {
    let chef = admin();
    let s = setup("lambdafail").await;
    let api = RuntimeApi::start().await;
    // A Chef server that does not answer: every Chef call fails transiently.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _function = start_function(&api, &s, &["lambda"], &format!("http://127.0.0.1:{closed}"));
    let ids = run_instances(1).await;
    terminate_instances(&ids).await;
    register(&chef, &format!("n-{}", ids[0]), Some(&ids[0])).await;

    let terminated_body = asg_terminate_notification(&ids[0], "web-asg");
    let poison_body = "{\"not\": \"an event\"}".to_string();
    let (event, ids_by_body) =
        sqs_event(&s.queue, &[terminated_body.clone(), poison_body.clone()]).await;
    let (kind, answer) = api.invoke(event).await;
    assert_eq!(kind, "response", "{answer}");
    // Exactly the termination is to be retried; the poison body went to the DLQ.
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": ids_by_body[&terminated_body]}]})
    );
    let dlq = dlq_reasons(&s.dlq).await;
    assert_eq!(dlq.keys().collect::<Vec<_>>(), vec![&poison_body]);
    assert_eq!(
        registered(&chef, &format!("n-{}", ids[0])).await,
        (true, true)
    );

    // SNS: the same transient failure fails the invocation, so Lambda retries it.
    let (kind, answer) = api.invoke(sns_event(&terminated_body)).await;
    assert_eq!(kind, "error", "{answer}");
    assert_eq!(answer["errorType"], "nodereaper.RetryableFailure");
}

#[tokio::test]
async fn missing_configuration_is_an_init_error() {
    let s = Setup {
        queue: String::new(),
        dlq: String::new(),
        bucket: String::new(),
        secret: "x".into(),
    };
    let api = RuntimeApi::start().await;
    let mut f = start_function(&api, &s, &["lambda"], stack().chef_url());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = f.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the function neither failed nor exited within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    // The cause is reported to the Runtime API, naming what to set.
    let init_error = api.state.lock().unwrap().init_error.clone();
    let init_error = init_error.expect("no POST /runtime/init/error");
    assert_eq!(init_error["errorType"], "nodereaper.Config", "{init_error}");
    assert!(
        init_error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("NODEREAPER_QUEUE_URL"),
        "{init_error}"
    );
    assert!(
        api.first_next().is_none(),
        "asked for an event despite the init error"
    );
}

/// `pipeline.dry_run` in Lambda: nothing deleted, nothing sent to the DLQ,
/// every SQS record left in its queue, an SNS invocation not failed (its
/// retries would only repeat the dry run). The happy twin (live) is
/// `sqs_batch_sns_and_eventbridge_through_the_runtime_api`.
#[tokio::test]
async fn dry_run_leaves_records_in_the_queue() {
    let chef = admin();
    let s = setup("lambdadry").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodereaper.toml");
    std::fs::write(&config, "[pipeline]\ndry_run = true\n").expect("config");
    let api = RuntimeApi::start().await;
    let _function = start_function_with(
        &api,
        &s,
        &["lambda"],
        Some(stack().chef_url()),
        &[("NODEREAPER_CONFIG", config.to_str().expect("utf-8 path"))],
    );
    let ids = run_instances(2).await;
    let (gone, running) = (&ids[0], &ids[1]);
    terminate_instances(std::slice::from_ref(gone)).await;
    for id in &ids {
        register(&chef, &format!("n-{id}"), Some(id)).await;
    }
    let gone_body = sns_wrap(&asg_terminate_notification(gone, "web-asg"));
    let forged_body = sns_wrap(&asg_terminate_notification(running, "web-asg"));
    let (event, ids_by_body) = sqs_event(&s.queue, &[gone_body.clone(), forged_body.clone()]).await;
    let (kind, answer) = api.invoke(event).await;
    assert_eq!(kind, "response", "{answer}");
    let mut failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    failed.sort_unstable();
    let mut expected = vec![
        ids_by_body[&gone_body].as_str(),
        ids_by_body[&forged_body].as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(failed, expected, "a record would be deleted from the queue");

    let (kind, answer) = api
        .invoke(sns_event(&asg_terminate_notification(running, "other-asg")))
        .await;
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(answer["outcomes"][0]["dry_run"], true, "{answer}");

    assert!(
        dlq_reasons(&s.dlq).await.is_empty(),
        "a dry run sent to the DLQ"
    );
    for id in &ids {
        assert_eq!(registered(&chef, &format!("n-{id}")).await, (true, true));
    }
    assert_eq!(journal_objects(&s.bucket).await, 0);
}

/// Several Chef targets in Lambda mode, each key from Secrets Manager: a
/// lifecycle message whose hook metadata names target b deletes the
/// registration on server b only (the same-named twin on a stays), and a
/// termination no rule routes goes to the DLQ with the reason, deleting
/// nothing anywhere. The lifecycle calls go to a recorder (moto does not
/// implement CompleteLifecycleAction), through the SDK's per-service
/// endpoint variable.
#[tokio::test]
async fn several_targets_route_in_lambda_with_keys_from_secrets_manager() {
    let b = common::second_server::SecondServer::start("targets-b");
    let (chef_a, chef_b) = (admin(), b.admin());
    let s = setup("lambdatargets").await;
    let secret_b = unique("nodereaper/chef-key-b");
    aws_sdk_secretsmanager::Client::new(&aws().await)
        .create_secret()
        .name(&secret_b)
        .secret_string(std::fs::read_to_string(&b.admin_key).expect("b key"))
        .send()
        .await
        .expect("secret b");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodereaper.toml");
    std::fs::write(
        &config,
        format!(
            "[[chef.targets]]\nname = \"a\"\nserver_url = \"{}\"\n\
             [[chef.targets]]\nname = \"b\"\nserver_url = \"{}\"\nclient_key_secret = \"{secret_b}\"\n",
            stack().chef_url(),
            b.url
        ),
    )
    .expect("config");
    let recorder = LifecycleRecorder::start(false).await;
    let api = RuntimeApi::start().await;
    let _function = start_function_with(
        &api,
        &s,
        &["lambda"],
        None,
        &[
            ("NODEREAPER_CONFIG", config.to_str().expect("utf-8 path")),
            ("AWS_ENDPOINT_URL_AUTO_SCALING", &recorder.url),
        ],
    );
    let ids = run_instances(2).await;
    terminate_instances(&ids).await;
    let (routed, unroutable) = (format!("n-{}", ids[0]), format!("n-{}", ids[1]));
    for name in [&routed, &unroutable] {
        let id = &name[2..];
        register(&chef_a, name, Some(id)).await;
        register(&chef_b, name, Some(id)).await;
    }
    let to_b = lifecycle_hook_message(&ids[0], "nodereaper:target=b");
    let nowhere = asg_terminate_notification(&ids[1], "web-asg");
    let (event, _) = sqs_event(&s.queue, &[to_b, nowhere.clone()]).await;
    let (kind, answer) = api.invoke(event).await;
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(answer, json!({"batchItemFailures": []}));

    assert_eq!(
        registered(&chef_b, &routed).await,
        (false, false),
        "b's registration deleted"
    );
    assert_eq!(
        registered(&chef_a, &routed).await,
        (true, true),
        "a's twin kept"
    );
    for chef in [&chef_a, &chef_b] {
        assert_eq!(registered(chef, &unroutable).await, (true, true));
    }
    let dlq = dlq_reasons(&s.dlq).await;
    assert_eq!(dlq.keys().collect::<Vec<_>>(), vec![&nowhere], "{dlq:?}");
    assert!(dlq[&nowhere].contains("target"), "{dlq:?}");
    let completed: Vec<_> = recorder
        .calls()
        .into_iter()
        .filter(|c| param(c, "Action") == Some("CompleteLifecycleAction"))
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(param(&completed[0], "InstanceId"), Some(ids[0].as_str()));
}
