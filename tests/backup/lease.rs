//! The restore Lease through the real `kube::Client` against an in-memory API.

use std::time::Duration;

use eternia_backup::Error;
use eternia_backup::kube::lease::{LeaseConfig, acquire, current_holder, holder};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use crate::helpers::*;

fn cfg(holder: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "backup".into(),
        name: "eternia-backup-restore".into(),
        holder: holder.into(),
        duration: Duration::from_secs(60),
    }
}

fn held_by(holder: &str, renewed_secs_ago: i64) -> Lease {
    let renewed =
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - renewed_secs_ago)
            .unwrap();
    Lease {
        metadata: ObjectMeta {
            name: Some("eternia-backup-restore".into()),
            namespace: Some("backup".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(60),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }),
    }
}

#[test]
fn an_expired_lease_has_no_holder() {
    let now = jiff::Timestamp::now();
    assert_eq!(
        current_holder(&held_by("restore-abc", 10), now),
        Some("restore-abc".into())
    );
    assert_eq!(current_holder(&held_by("restore-abc", 120), now), None);
}

#[tokio::test]
async fn a_second_restore_fails_fast_naming_the_holder_until_the_first_releases() {
    let client = kube_fake_client::ClientBuilder::new()
        .build()
        .await
        .unwrap();
    let first = acquire(client.clone(), &cfg("restore-job-1"))
        .await
        .unwrap();

    let err = acquire(client.clone(), &cfg("restore-job-2"))
        .await
        .err()
        .expect("the lease is held");
    assert!(
        matches!(&err, Error::LeaseHeld { holder, .. } if holder == "restore-job-1"),
        "{err}"
    );
    assert_eq!(
        holder(client.clone(), &cfg("backup-pod")).await.unwrap(),
        Some("restore-job-1".into())
    );

    first.release().await;
    assert_eq!(
        holder(client.clone(), &cfg("backup-pod")).await.unwrap(),
        None
    );
    acquire(client.clone(), &cfg("restore-job-2"))
        .await
        .unwrap()
        .release()
        .await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let client = kube_fake_client::ClientBuilder::new()
        .with_object(held_by("crashed-restore", 300))
        .build()
        .await
        .unwrap();
    acquire(client, &cfg("restore-job-2"))
        .await
        .unwrap()
        .release()
        .await;
}

#[tokio::test]
async fn a_backup_skips_with_exit_code_zero_while_a_restore_holds_the_lease() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let client = kube_fake_client::ClientBuilder::new()
        .with_object(held_by("restore-job-7", 5))
        .build()
        .await
        .unwrap();
    let plan = backup_plan_with_cluster(&db, dir.path(), client).await;

    let err = eternia_backup::commands::backup::run(plan)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, Error::SkippedForRestore { holder, .. } if holder == "restore-job-7"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 0);
    assert!(err.to_string().contains("restore is in progress"));
    assert!(files(dir.path()).is_empty(), "nothing was written");
}
