//! From parsed command line to work done: builds the typed plans, runs the subcommand, prints results
//! to stdout and errors (one line, with what to check) to the log, and returns the exit code.

use std::time::Duration;

use secrecy::SecretString;
use tracing::{error, info, warn};

use crate::archive::codec::{EncodeOptions, parse_recipients};
use crate::cli::{BackupArgs, Cli, Command, GlobalArgs, OutputFormat, RestoreArgs, RetentionArgs};
use crate::commands::backup::{BackupPlan, KubernetesSource};
use crate::commands::restore::{self, KubeRestore, RestorePlan, Which};
use crate::commands::{backup, list, prune, verify};
use crate::error::{Error, Result};
use crate::kube::export::ExportFilter;
use crate::kube::lease::LeaseConfig;
use crate::kube::selector::Selector;
use crate::lock::DirLock;
use crate::notify::Notifier;
use crate::postgres::PgTarget;
use crate::postgres::dump::DumpOptions;
use crate::retention::Policy;
use crate::store::select::Stores;
use crate::telemetry;

pub fn run(cli: Cli) -> i32 {
    crate::memory::bound_allocator();
    crate::tls::install_crypto_provider();
    telemetry::init(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => 0,
        Err(e @ Error::SkippedForRestore { .. }) => {
            warn!("{e}");
            e.exit_code()
        }
        Err(e) => {
            error!("{e}");
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Backup(args) => run_backup(&global, args).await,
        Command::List(args) => {
            let stores = Stores::open(&global.backup_dir, &global.prefix, &args.stores).await?;
            let mut backups = Vec::new();
            for store in stores.all() {
                backups.extend(store.list().await?);
            }
            backups.sort_by(|a, b| {
                a.created
                    .cmp(&b.created)
                    .then_with(|| a.location.cmp(&b.location))
            });
            let out = match args.output {
                OutputFormat::Table => list::render_table(&backups),
                OutputFormat::Json => list::render_json(&backups) + "\n",
            };
            print!("{out}");
            Ok(())
        }
        Command::Verify(args) => {
            let stores = Stores::open(&global.backup_dir, &global.prefix, &args.stores).await?;
            let store = verify::store_holding(&stores.all(), &args.name).await?;
            let report = verify::verify(store, &args.name, args.identity_file, None).await?;
            let at = store.location();
            if report.contents_checked {
                println!(
                    "OK {} ({at}): archive checksum and all {} entries verified",
                    report.name, report.entries
                );
            } else {
                println!(
                    "OK {} ({at}): archive checksum verified; contents not checked (encrypted: pass --identity-file or set AGE_IDENTITY_FILE)",
                    report.name
                );
            }
            Ok(())
        }
        Command::Restore(args) => run_restore(&global, args).await,
        Command::Serve(args) => crate::webhook::serve(&global, &args).await,
        Command::Drill(args) => {
            let stores = Stores::open(&global.backup_dir, &global.prefix, &args.stores).await?;
            let target = pg_target(&args.database)?;
            let checks = match &args.checks {
                Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                    Error::config(format!("cannot read --checks {}: {e}", p.display()))
                })?),
                None => None,
            };
            let which = if args.name == "latest" {
                Which::Latest
            } else {
                Which::Named(args.name.clone())
            };
            let r = restore::drill(
                &stores,
                &which,
                &target,
                args.pg_restore,
                args.identity_file,
                checks,
            )
            .await?;
            let verdict = if r.passed { "PASS" } else { "FAIL" };
            println!(
                "drill {verdict} {}: verify {:.1}s, restore+checks {:.1}s, total {:.1}s (scratch database {} dropped)",
                r.archive,
                r.verify.as_secs_f64(),
                r.restore.as_secs_f64(),
                r.total.as_secs_f64(),
                r.scratch
            );
            for p in &r.problems {
                println!("  - {p}");
            }
            if r.passed {
                Ok(())
            } else {
                Err(Error::Restore {
                    step: "drill".into(),
                    problem: format!("{} problems", r.problems.len()),
                    hint: "the lines above".into(),
                })
            }
        }
        Command::Prune(args) => {
            let stores = Stores::open(&global.backup_dir, &global.prefix, &args.stores).await?;
            let _lock = match &stores.local {
                Some(local) => {
                    local.check_dir()?;
                    Some(DirLock::acquire(local.dir())?)
                }
                None => None,
            };
            let policy = policy(&args.retention)?;
            for store in stores.all() {
                let report = prune::prune(
                    store,
                    &policy,
                    jiff::Timestamp::now(),
                    Duration::from_secs(args.stale_partial_age),
                    args.dry_run,
                )
                .await?;
                println!("# {}", store.location());
                print!("{}", report.render());
            }
            Ok(())
        }
    }
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

async fn run_backup(global: &GlobalArgs, args: BackupArgs) -> Result<()> {
    let notifier = args
        .notify_slack_webhook_url
        .clone()
        .filter(|u| !u.is_empty())
        .map(|u| Notifier::new(SecretString::from(u), args.notify_on_success));
    let result = async {
        let plan = backup_plan(global, &args).await?;
        backup::run(plan).await
    }
    .await;
    match (&result, &notifier) {
        (Ok(s), Some(n)) if n.on_success => {
            n.send(&format!(":white_check_mark: {}", s.one_line()))
                .await
        }
        (Err(Error::AlreadyRunning { .. } | Error::SkippedForRestore { .. }), _) => {}
        (Err(e @ Error::Offsite { .. }), Some(n)) => {
            n.send(&format!(":warning: eternia-backup: {e}")).await
        }
        (Err(e), Some(n)) => {
            n.send(&format!(":x: eternia-backup: backup FAILED: {e}"))
                .await
        }
        _ => {}
    }
    let summary = result?;
    println!("{} ({})", summary.one_line(), summary.locations.join(", "));
    for r in summary
        .retention
        .iter()
        .filter(|r| !r.deleted.is_empty() || !r.stale_partials.is_empty())
    {
        info!(deleted = ?r.deleted, stale_partials = ?r.stale_partials, "retention removed old backups");
    }
    Ok(())
}

async fn run_restore(global: &GlobalArgs, args: RestoreArgs) -> Result<()> {
    let which = match (&args.before, args.name.as_deref()) {
        (Some(t), _) => Which::Before(*t),
        (None, Some("latest")) | (None, None) => Which::Latest,
        (None, Some(n)) => Which::Named(n.to_owned()),
    };
    let mut target = pg_target(&args.backup.database)?;
    if let Some(db) = args.target_database.as_deref().filter(|d| !d.is_empty()) {
        target = target.with_database(db);
    }
    let safety = if args.no_safety_backup || args.dry_run {
        None
    } else {
        let mut p = backup_plan(global, &args.backup).await?;
        p.target = target.clone();
        p.retention = None;
        // The restore holds the lease itself; its own safety backup must not wait for it.
        p.lease = None;
        Some(p)
    };
    for spec in &args.restart {
        crate::kube::apply::deployment_name(spec)?;
    }
    let kubernetes = (!args.backup.no_kubernetes).then(|| KubeRestore {
        client: None,
        namespace: args
            .target_namespace
            .clone()
            .unwrap_or_else(|| args.backup.namespace.clone()),
        deployments: args
            .restart
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        include_gitops: args.include_gitops_managed,
        rollout_timeout: args.rollout_timeout,
    });
    let plan = RestorePlan {
        stores: Stores::open(&global.backup_dir, &global.prefix, &args.backup.stores).await?,
        which,
        target,
        mode: args.mode,
        dry_run: args.dry_run,
        safety,
        identity_file: args.identity_file.clone(),
        pg_restore: args.pg_restore.clone(),
        jobs: args.jobs.map(|j| j.clamp(1, 64)),
        lease: (!args.backup.no_kubernetes && !args.dry_run).then(|| lease_config(&args.backup)),
        kubernetes,
    };
    let s = restore::run(plan).await?;
    if s.dry_run {
        println!("DRY RUN: nothing changed");
    }
    println!(
        "archive {} ({}): checksums OK, {} tables / {} rows",
        s.archive, s.location, s.tables, s.rows
    );
    if s.dry_run {
        println!(
            "database {}: mode {}, dump {} MiB, {}",
            s.database,
            s.mode.map_or("clean", |m| match m {
                restore::Mode::Clean => "clean",
                restore::Mode::Swap => "swap",
            }),
            s.dump_bytes.div_ceil(1 << 20),
            if s.jobs > 1 {
                format!(
                    "pg_restore -j{} from the dump written to the backup volume",
                    s.jobs
                )
            } else {
                "the dump streamed into pg_restore".to_owned()
            }
        );
        for t in &s.table_counts {
            println!("  table {}.{}: {} rows", t.schema, t.table, t.rows);
        }
    }
    for o in &s.objects {
        println!("  {} {}: {:?}", o.kind, o.name, o.action);
    }
    for d in &s.restarted {
        println!("  restart {d}");
    }
    if !s.dry_run {
        if let Some(n) = &s.safety_backup {
            println!("safety backup: {n} (to undo: eternia-backup restore {n})");
        }
        println!(
            "row counts match the manifest: {} tables by PostgreSQL's insert counters, {} counted",
            s.row_check.by_counters, s.row_check.counted
        );
        if let Some(p) = &s.previous_database {
            println!("previous database kept as {p}");
        }
        println!(
            "restore of {} complete in {:.1}s",
            s.archive,
            s.duration.as_secs_f64()
        );
    }
    Ok(())
}

fn lease_config(args: &BackupArgs) -> LeaseConfig {
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

fn pg_target(args: &crate::cli::DatabaseArgs) -> Result<PgTarget> {
    let url = args
        .database_url
        .clone()
        .filter(|u| !u.is_empty())
        .map(SecretString::from);
    PgTarget::resolve(url.as_ref(), |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })
}

/// Validates every input before anything touches the database or the volume.
pub async fn backup_plan(global: &GlobalArgs, args: &BackupArgs) -> Result<BackupPlan> {
    let recipients = parse_recipients(&args.encrypt_to)?;
    let level = args
        .compression_level
        .unwrap_or_else(|| args.compression.default_level());
    let valid_levels = match args.compression {
        crate::archive::Compression::Gzip => 0..=9,
        crate::archive::Compression::Zstd => 1..=19,
    };
    if !valid_levels.contains(&level) {
        return Err(Error::config(format!(
            "compression level {level} is out of range for {} ({}..={})",
            args.compression.as_str(),
            valid_levels.start(),
            valid_levels.end()
        )));
    }
    let target = pg_target(&args.database)?;
    let kubernetes = if args.no_kubernetes {
        None
    } else {
        let exclude = args
            .exclude_selector
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(Selector::parse)
            .transpose()?;
        let include = args.include_selector.clone().filter(|s| !s.is_empty());
        if let Some(sel) = &include {
            Selector::parse(sel)?;
        }
        Some(KubernetesSource {
            client: None,
            namespace: args.namespace.clone(),
            filter: ExportFilter {
                include,
                exclude,
                include_system: args.include_system_objects,
                page_size: 200,
            },
        })
    };
    let chunk_size = usize::try_from(args.chunk_size)
        .ok()
        .filter(|c| (64 << 10..=1 << 30).contains(c))
        .ok_or_else(|| Error::config("--chunk-size must be between 64KiB and 1GiB"))?;
    Ok(BackupPlan {
        prefix: global.prefix.clone(),
        stores: Stores::open(&global.backup_dir, &global.prefix, &args.stores).await?,
        target,
        kubernetes,
        encode: EncodeOptions {
            compression: args.compression,
            level,
            threads: args.compression_threads,
            recipients,
        },
        dump: DumpOptions {
            pg_dump: args.pg_dump.clone(),
            chunk_size,
        },
        retention: (!args.no_prune)
            .then(|| policy(&args.retention))
            .transpose()?,
        lease: Some(lease_config(args)),
        progress_interval: Duration::from_secs(args.progress_interval.max(1)),
    })
}
