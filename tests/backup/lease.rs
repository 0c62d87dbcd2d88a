//! The restore Lease's expiry through the real `kube::Client` against an in-memory API (a Lease renewed
//! long ago, without waiting for it). Two restores contending and a backup skipping while a restore holds
//! the Lease run on the real API server: tests/cluster/test_workflows.py.

use std::time::Duration;

use eternia_backup::kube::lease::{LeaseConfig, acquire, current_holder};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

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
