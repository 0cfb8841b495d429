//! `[[aws.accounts]]` roles on the real stack (moto's STS AssumeRole hands
//! out credentials of the role's account): a role that lands in another
//! account than the entry's `id` is refused at first use, where asking would
//! find none of the account's instances and so call every one gone.
//! (`config::tests::role_arn_must_belong_to_its_account` refuses the plain
//! copy-paste case at load time; these tests build the configuration in code
//! to get past that check and reach the run-time one.)

mod common;

use std::time::Duration;

use common::*;
use nodereaper::adapters::aws::fleet::AwsFleet;
use nodereaper::config::{AccountConfig, AwsConfig};
use nodereaper::core::ec2::Ec2State;
use nodereaper::core::placement::Placement;
use nodereaper::ports::{ChefApi, Fleet, PlacementError};

const THEIRS: &str = "111111111111";
const ELSEWHERE: &str = "222222222222";

fn aws_config(role_account: &str) -> AwsConfig {
    AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(stack().moto_url().to_string()),
        accounts: vec![AccountConfig {
            id: THEIRS.into(),
            role_arn: format!("arn:aws:iam::{role_account}:role/nodereaper-verify"),
            external_id: None,
        }],
    }
}

fn placement() -> Placement {
    Placement {
        account: Some(THEIRS.into()),
        region: "us-east-1".into(),
    }
}

#[tokio::test]
async fn role_of_another_account_is_refused_at_first_use() {
    let theirs = aws_as(
        &format!("arn:aws:iam::{THEIRS}:role/nodereaper-verify"),
        "us-east-1",
    )
    .await;
    let alive = run_instances_with(&theirs, 1).await.remove(0);

    // Happy twin: the role of the entry's own account sees its instance running.
    let fleet = AwsFleet::new(&aws_config(THEIRS));
    let regional = fleet.regional(&placement()).await.expect("own role");
    let states = regional
        .inventory
        .describe(std::slice::from_ref(&alive))
        .await
        .expect("describe");
    assert_eq!(
        states.get(&alive).map(|i| i.state.clone()),
        Some(Ec2State::Running),
        "{states:?}"
    );

    // A role in another account: refused, never a verdict. Asked there, the
    // running instance would be unknown, which counts as gone.
    let fleet = AwsFleet::new(&aws_config(ELSEWHERE));
    let err = match fleet.regional(&placement()).await {
        Ok(_) => panic!("a role of account {ELSEWHERE} was used for {THEIRS}"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, PlacementError::WrongRoleAccount { actual, .. } if actual == ELSEWHERE),
        "{err}"
    );
    // nodereaper's configuration is wrong, not the message: held, not dead-lettered.
    assert!(!nodereaper::core::error::Classify::blames_message(&err));
    // doctor names it too.
    let doctor = fleet
        .check_account(&aws_config(ELSEWHERE).accounts[0], "us-east-1")
        .await;
    assert!(
        doctor
            .as_ref()
            .is_err_and(|e| e.to_string().contains(ELSEWHERE)),
        "{doctor:?}"
    );
}

#[tokio::test]
async fn event_of_an_account_whose_role_lands_elsewhere_is_held() {
    let chef = admin();
    let theirs = aws_as(
        &format!("arn:aws:iam::{THEIRS}:role/nodereaper-verify"),
        "us-east-1",
    )
    .await;
    let alive = run_instances_with(&theirs, 1).await.remove(0);
    let (queue, dlq) = queue_with_dlq(&unique("wrongrole"), 5).await;
    let name = unique("wrongrole");
    register(&chef, &name, Some(&alive)).await;
    send(&queue, &state_change(&alive)).await;

    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    cfg.aws = aws_config(ELSEWHERE);
    let p = pipeline(&cfg, None).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(async move { p.run(rx, false).await });
    // Long enough for the message to be received, refused and probed again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    tx.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("stops")
        .expect("run");

    assert!(
        chef.get_node(&name).await.expect("get").is_some(),
        "the running instance's node was deleted"
    );
    assert!(dead_letters(&dlq).await.is_empty(), "dead-lettered");
    let (visible, hidden) = depth(&queue).await;
    assert_eq!(visible + hidden, 1, "the message must be held in its queue");
}

/// An EventBridge state-change (terminated) of `id` in account THEIRS.
fn state_change(id: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": THEIRS,
        "time": "2026-11-25T10:15:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:{THEIRS}:instance/{id}")],
        "detail": {"instance-id": id, "state": "terminated"}
    })
    .to_string()
}
