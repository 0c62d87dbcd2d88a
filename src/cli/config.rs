//! Flags and environment into the operations' typed configuration, in one place. Every input is
//! validated here, before anything touches the database, the volume or the cluster; secrets are wrapped
//! in `SecretString` as they are read.

use std::time::Duration;

use secrecy::SecretString;

use super::args::{
    ArchiveArgs, BackupArgs, ChecksumArg, CompressionArg, DatabaseArgs, DrillArgs, GlobalArgs,
    KubernetesArgs, LeaseArgs, LogFormatArg, ModeArg, OwnershipArgs, PruneArgs, RestoreArgs,
    RetentionArgs, ServeArgs, StoreArg, StoreArgs, WhichDatabasesArgs,
};
use crate::archive::Compression;
use crate::archive::codec::{EncodeOptions, parse_recipients};
use crate::commands::backup::{BackupConfig, Databases, KubernetesSource};
use crate::commands::drill::DrillConfig;
use crate::commands::hooks::Hooks;
use crate::commands::prune::PruneConfig;
use crate::commands::restore::{KubeRestore, Mode, RestoreConfig, RolesConfig};
use crate::commands::which_databases::ArchivedDatabases;
use crate::error::{Error, Result};
use crate::kube::export::ExportFilter;
use crate::kube::lease::LeaseConfig;
use crate::kube::selector::Selector;
use crate::notify::Notifier;
use crate::postgres::PgTarget;
use crate::postgres::dump::DumpOptions;
use crate::postgres::restore::Ownership;
use crate::retention::Policy;
use crate::store::s3::{ChecksumMode, MIN_PART_SIZE, S3Settings, Sse};
use crate::store::{StoreChoice, StoreConfig, Which};
use crate::telemetry::LogFormat;
use crate::webhook::jwt::{JwksSource, Policy as TokenPolicy, Verifier};
use crate::webhook::pattern::Pattern;
use crate::webhook::slack::SlackAuth;
use crate::webhook::source::{Cidr, TrustedProxies};
use crate::webhook::{JobsConfig, Settings, SlackSettings, WebhookConfig};

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Clean => Mode::Clean,
            ModeArg::Swap => Mode::Swap,
        }
    }
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

impl From<ChecksumArg> for ChecksumMode {
    fn from(c: ChecksumArg) -> ChecksumMode {
        match c {
            ChecksumArg::WhenRequired => ChecksumMode::WhenRequired,
            ChecksumArg::Crc32 => ChecksumMode::Crc32,
            ChecksumArg::Sha256 => ChecksumMode::Sha256,
        }
    }
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> LogFormat {
        match f {
            LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Text => LogFormat::Text,
        }
    }
}

/// A value that is only set when it is not empty (the chart sets every variable, some to "").
fn non_empty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

fn secret(v: &Option<String>) -> Option<SecretString> {
    v.clone()
        .filter(|s| !s.trim().is_empty())
        .map(SecretString::from)
}

/// Where backups are written and read. Default: both when a bucket is configured, else local.
pub fn store_config(global: &GlobalArgs, args: &StoreArgs) -> Result<StoreConfig> {
    let bucket = non_empty(&args.s3_bucket);
    let choice = match args.store {
        Some(StoreArg::Local) => StoreChoice::Local,
        Some(StoreArg::S3) => StoreChoice::S3,
        Some(StoreArg::Both) => StoreChoice::Both,
        None if bucket.is_some() => StoreChoice::Both,
        None => StoreChoice::Local,
    };
    let s3 = if matches!(choice, StoreChoice::S3 | StoreChoice::Both) {
        let bucket = bucket.ok_or_else(|| {
            Error::config("--store s3/both needs a bucket: set S3_BUCKET (s3-bucket in the backup-credentials Secret)")
        })?;
        Some(s3_settings(bucket, args)?)
    } else {
        None
    };
    Ok(StoreConfig {
        backup_dir: global.backup_dir.clone(),
        prefix: global.prefix.clone(),
        choice,
        s3,
    })
}

fn s3_settings(bucket: String, a: &StoreArgs) -> Result<S3Settings> {
    let sse = match a.s3_sse.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("AES256") => Some(Sse::Aes256),
        Some(s) if s.eq_ignore_ascii_case("aws:kms") => Some(Sse::Kms {
            key_id: non_empty(&a.s3_sse_kms_key_id),
        }),
        Some(other) => {
            return Err(Error::config(format!(
                "S3_SSE={other:?} is not supported; use AES256 or aws:kms"
            )));
        }
    };
    let part_size = usize::try_from(a.s3_part_size)
        .ok()
        .filter(|p| (MIN_PART_SIZE..=5 << 30).contains(p))
        .ok_or_else(|| Error::config("S3_PART_SIZE must be between 5MiB and 5GiB"))?;
    Ok(S3Settings {
        bucket,
        prefix: S3Settings::normalize_prefix(&a.s3_prefix),
        endpoint: non_empty(&a.s3_endpoint),
        force_path_style: a.s3_force_path_style,
        region: non_empty(&a.s3_region),
        storage_class: non_empty(&a.s3_storage_class),
        sse,
        checksum: a.s3_checksum.into(),
        part_size,
        max_in_flight: a.s3_max_in_flight.clamp(1, 16),
        max_attempts: a.s3_max_attempts.clamp(1, 10),
    })
}

/// `DATABASE_URL`, else the libpq variables.
pub fn pg_target(args: &DatabaseArgs) -> Result<PgTarget> {
    let url = secret(&args.database_url);
    PgTarget::resolve(url.as_ref(), |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })
}

/// The retention policy; refuses one that would keep nothing but the newest backup (as the chart's schema
/// refuses `retention.days: 0`), since a typo there deletes every other backup at the next run.
pub fn policy(r: &RetentionArgs) -> Result<Policy> {
    let p = Policy {
        keep_days: r.keep_days,
        keep_last: r.keep_last,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        safety_keep_days: r.keep_safety_days,
    };
    if p.keep_days == 0
        && p.keep_last == 0
        && p.keep_daily == 0
        && p.keep_weekly == 0
        && p.keep_monthly == 0
    {
        return Err(Error::Config(
            "BACKUP_RETENTION_DAYS (--keep-days) is 0 and no other retention rule is set: retention would delete \
             every backup but the newest. Set it to 1 or more, or set BACKUP_KEEP_LAST/DAILY/WEEKLY/MONTHLY"
                .into(),
        ));
    }
    Ok(p)
}

fn lease_config(args: &LeaseArgs) -> LeaseConfig {
    let holder = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("eternia-backup-{}", std::process::id()));
    LeaseConfig {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        holder,
        duration: Duration::from_secs(60),
    }
}

fn encode_options(a: &ArchiveArgs) -> Result<EncodeOptions> {
    let recipients = parse_recipients(&a.encrypt_to)?;
    let compression = Compression::from(a.compression);
    let level = a
        .compression_level
        .unwrap_or_else(|| compression.default_level());
    let valid_levels = match compression {
        Compression::Gzip => 0..=9,
        Compression::Zstd => 1..=19,
    };
    if !valid_levels.contains(&level) {
        return Err(Error::config(format!(
            "compression level {level} is out of range for {} ({}..={})",
            compression.as_str(),
            valid_levels.start(),
            valid_levels.end()
        )));
    }
    Ok(EncodeOptions {
        compression,
        level,
        threads: a.compression_threads,
        recipients,
    })
}

fn export_source(k: &KubernetesArgs) -> Result<Option<KubernetesSource>> {
    if k.no_kubernetes {
        return Ok(None);
    }
    let exclude = k
        .exclude_selector
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(Selector::parse)
        .transpose()?;
    let include = non_empty(&k.include_selector);
    if let Some(sel) = &include {
        Selector::parse(sel)?;
    }
    Ok(Some(KubernetesSource {
        namespace: k.namespace.clone(),
        filter: ExportFilter {
            include,
            exclude,
            include_system: k.include_system_objects,
            page_size: 200,
        },
    }))
}

/// A backup as `backup` runs it, or as a restore's safety backup (no retention, no Lease check: the
/// restore holds the Lease itself).
fn archive_backup(
    global: &GlobalArgs,
    database: &DatabaseArgs,
    kubernetes: &KubernetesArgs,
    archive: &ArchiveArgs,
) -> Result<BackupConfig> {
    let encode = encode_options(archive)?;
    let target = pg_target(database)?;
    let kubernetes = export_source(kubernetes)?;
    let chunk_size = usize::try_from(archive.chunk_size)
        .ok()
        .filter(|c| (64 << 10..=1 << 30).contains(c))
        .ok_or_else(|| Error::config("--chunk-size must be between 64KiB and 1GiB"))?;
    Ok(BackupConfig {
        prefix: global.prefix.clone(),
        target,
        kubernetes,
        encode,
        dump: DumpOptions {
            pg_dump: archive.pg_dump.clone(),
            chunk_size,
        },
        retention: None,
        lease: None,
        safety: false,
        databases: Databases::Target,
        objects_only: false,
        progress_interval: Duration::from_secs(archive.progress_interval.max(1)),
    })
}

pub fn backup_config(global: &GlobalArgs, args: &BackupArgs) -> Result<BackupConfig> {
    let mut cfg = archive_backup(global, &args.database, &args.kubernetes, &args.archive)?;
    cfg.databases = databases(&args.databases)?;
    cfg.retention = (!args.no_prune)
        .then(|| policy(&args.retention))
        .transpose()?;
    cfg.lease = Some(lease_config(&args.lease));
    Ok(cfg)
}

/// `BACKUP_DATABASES`: names, or `all` alone.
fn databases(list: &[String]) -> Result<Databases> {
    let names = trimmed(list);
    match names.as_slice() {
        [] => Ok(Databases::Target),
        [all] if all == "all" => Ok(Databases::All),
        more if more.iter().any(|n| n == "all") => Err(Error::config(
            "BACKUP_DATABASES is `all` or a list of names, not both",
        )),
        _ => Ok(Databases::Named(names)),
    }
}

/// `--database` / `--all-databases`.
fn archived_databases(
    args: &WhichDatabasesArgs,
    target_database: Option<&str>,
) -> ArchivedDatabases {
    match (&args.database, args.all_databases) {
        (_, true) => ArchivedDatabases::All,
        (Some(name), false) if !name.is_empty() => ArchivedDatabases::Named {
            name: name.clone(),
            into_configured: target_database.is_some_and(|d| !d.is_empty()),
        },
        _ => ArchivedDatabases::First,
    }
}

pub fn notifier(url: &Option<String>, on_success: bool) -> Option<Notifier> {
    secret(url).map(|u| Notifier::new(u, on_success))
}

pub fn restore_config(global: &GlobalArgs, args: &RestoreArgs) -> Result<RestoreConfig> {
    let which = match (&args.before, args.name.as_deref()) {
        (Some(t), _) => Which::Before(*t),
        (None, Some(n)) => Which::from_arg(n),
        (None, None) => Which::Latest,
    };
    let mut target = pg_target(&args.database)?;
    if let Some(db) = args.target_database.as_deref().filter(|d| !d.is_empty()) {
        target = target.with_database(db);
    }
    let safety = if args.no_safety_backup || args.dry_run {
        None
    } else {
        let mut cfg = archive_backup(global, &args.database, &args.kubernetes, &args.safety)?;
        cfg.target = target.clone();
        cfg.safety = true;
        // The undo must hold what the restore is about to overwrite: the target namespace's objects.
        if let (Some(k), Some(ns)) = (cfg.kubernetes.as_mut(), target_namespace(args)) {
            k.namespace = ns;
        }
        Some(cfg)
    };
    for spec in &args.restart {
        crate::kube::apply::deployment_name(spec)?;
    }
    let with_kubernetes = !args.kubernetes.no_kubernetes;
    if args.scale_to_zero && !with_kubernetes {
        return Err(Error::config(
            "--scale-to-zero needs Kubernetes: with --no-kubernetes there is no Deployment to scale; drop one of them",
        ));
    }
    let kubernetes = with_kubernetes.then(|| KubeRestore {
        namespace: target_namespace(args).unwrap_or_else(|| args.kubernetes.namespace.clone()),
        deployments: args
            .restart
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        include_gitops: args.include_gitops_managed,
        rollout_timeout: args.rollout_timeout,
        scale_to_zero: args.scale_to_zero,
    });
    Ok(RestoreConfig {
        which,
        target,
        databases: archived_databases(&args.which_databases, args.target_database.as_deref()),
        mode: args.mode.into(),
        dry_run: args.dry_run,
        safety,
        identity_file: args.identity_file.clone(),
        pg_restore: args.pg_restore.clone(),
        jobs: args.jobs.map(|j| j.clamp(1, 64)),
        lease: (with_kubernetes && !args.dry_run).then(|| lease_config(&args.lease)),
        kubernetes,
        ownership: ownership(&args.ownership)?,
        roles: RolesConfig {
            create: !args.ownership.no_create_roles,
            passwords_dir: args.ownership.role_passwords_dir.clone(),
        },
        hooks: Hooks {
            pre: non_empty(&args.pre_restore_hook),
            post: non_empty(&args.post_restore_hook),
        },
    })
}

/// `--no-owner`, `--no-privileges`, `--role`, `--owner-map OLD=NEW`.
fn ownership(args: &OwnershipArgs) -> Result<Ownership> {
    let mut owner_map = Vec::new();
    for item in args
        .owner_map
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        match item.split_once('=') {
            Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => {
                owner_map.push((old.trim().to_owned(), new.trim().to_owned()))
            }
            _ => {
                return Err(Error::config(format!(
                    "--owner-map {item:?} is not OLD=NEW (two role names, e.g. app_owner=tenant_admin)"
                )));
            }
        }
    }
    Ok(Ownership {
        no_owner: args.no_owner,
        no_privileges: args.no_privileges,
        role: non_empty(&args.role),
        owner_map,
    })
}

/// `--target-namespace`, when given.
fn target_namespace(args: &RestoreArgs) -> Option<String> {
    non_empty(&args.target_namespace)
}

pub fn drill_config(args: &DrillArgs) -> Result<DrillConfig> {
    let target = pg_target(&args.database)?;
    let checks = match &args.checks {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| Error::config(format!("cannot read --checks {}: {e}", p.display())))?,
        ),
        None => None,
    };
    Ok(DrillConfig {
        which: Which::from_arg(&args.name),
        target,
        databases: archived_databases(&args.which_databases, None),
        pg_restore: args.pg_restore.clone(),
        identity_file: args.identity_file.clone(),
        checks,
    })
}

pub fn prune_config(args: &PruneArgs) -> Result<PruneConfig> {
    Ok(PruneConfig {
        policy: policy(&args.retention)?,
        stale_after: Duration::from_secs(args.stale_partial_age),
        dry_run: args.dry_run,
    })
}

fn trimmed(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The webhook's settings; the Job namespace defaults to the pod's own.
pub fn webhook_config(global: &GlobalArgs, args: &ServeArgs) -> Result<WebhookConfig> {
    let jwks = match (&args.jwks_file, &args.jwks_url) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "set WEBHOOK_JWKS_FILE or WEBHOOK_JWKS_URL, not both",
            ));
        }
        (Some(f), None) => Some(JwksSource::File(f.clone())),
        (None, Some(u)) => Some(JwksSource::Url(u.clone())),
        (None, None) => None,
    };
    let policy = TokenPolicy {
        issuer: non_empty(&args.jwt_issuer),
        audience: non_empty(&args.jwt_audience),
        subjects: Pattern::list(&args.allowed_subjects),
        claims: TokenPolicy::parse_claims(&args.jwt_claims).map_err(Error::config)?,
        max_age: args.jwt_max_age,
        leeway: args.jwt_leeway,
    };
    let verifier = Verifier::new(secret(&args.jwt_hs256_secret).as_ref(), jwks, policy)
        .map_err(Error::config)?;
    let slack = secret(&args.slack_signing_secret).map(|s| SlackSettings {
        auth: SlackAuth::new(s),
        allowed_users: trimmed(&args.slack_allowed_users),
        allowed_channels: trimmed(&args.slack_allowed_channels),
        response_url_prefix: args.slack_response_url_prefix.clone(),
        confirm_ttl: args.slack_confirm_ttl,
    });
    let namespace = non_empty(&args.job_namespace)
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "backup".into());
    Ok(WebhookConfig {
        settings: Settings {
            verifier,
            slack,
            prefix: global.prefix.clone(),
            rate_limit_per_minute: args.rate_limit,
            rate_burst: args.rate_burst,
            trusted_proxies: TrustedProxies::new(
                trimmed(&args.trusted_proxies)
                    .iter()
                    .map(|c| Cidr::parse(c))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| Error::config(format!("WEBHOOK_TRUSTED_PROXIES: {e}")))?,
                args.trust_forwarded_for,
            ),
            body_limit: usize::try_from(args.body_limit).unwrap_or(usize::MAX),
            poll_interval: args.poll_interval,
            max_backup_age: args.max_backup_age,
        },
        jobs: JobsConfig {
            lease_namespace: non_empty(&args.lease_namespace).unwrap_or_else(|| namespace.clone()),
            namespace,
            cronjob: args.restore_cronjob.clone(),
            drill_cronjob: args.drill_cronjob.clone(),
            lease_name: args.lease_name.clone(),
        },
        // A store that cannot be configured only costs the listing: `serve` says so and runs.
        stores: store_config(global, &args.stores),
        listen: args.listen,
        workers: args.workers,
        metrics_refresh: args.metrics_refresh,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::restore_config;
    use crate::cli::{Cli, Command};

    fn restore(args: &[&str]) -> crate::commands::restore::RestoreConfig {
        let mut argv = vec![
            "eternia-backup",
            "restore",
            "--database-url",
            "postgres://u@db/app",
        ];
        argv.extend_from_slice(args);
        let cli = Cli::parse_from(argv);
        let Command::Restore(r) = &cli.command else {
            unreachable!("parsed a restore")
        };
        restore_config(&cli.global, r).unwrap()
    }

    #[test]
    fn the_safety_backup_of_a_restore_into_another_namespace_exports_that_namespace() {
        let cfg = restore(&[
            "latest",
            "--namespace",
            "prod",
            "--target-namespace",
            "staging",
        ]);
        assert_eq!(cfg.kubernetes.as_ref().unwrap().namespace, "staging");
        let safety = cfg.safety.as_ref().unwrap().kubernetes.as_ref().unwrap();
        assert_eq!(
            safety.namespace, "staging",
            "the undo holds what the restore overwrites"
        );
    }

    #[test]
    fn the_safety_backup_goes_to_the_target_database_and_checks_no_lease_and_keeps_no_retention() {
        let cfg = restore(&["latest", "--target-database", "app_copy"]);
        let safety = cfg.safety.as_ref().unwrap();
        assert_eq!(safety.target.dbname, "app_copy");
        assert!(safety.lease.is_none() && safety.retention.is_none());
        assert!(cfg.lease.is_some(), "the restore itself holds the Lease");
    }
}
