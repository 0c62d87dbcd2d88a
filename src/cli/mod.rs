//! The command line: arguments (`args`, clap only), their conversion into typed configuration
//! (`config`), what is printed (`render`), and the exit code. It is the only module that knows clap;
//! the operations below it take typed configuration and return reports.

pub mod args;
pub mod config;
pub mod render;

use tracing::{error, info, warn};

pub use crate::units::{parse_duration, parse_size};
pub use args::{Cli, Command};

use crate::commands::{backup, drill, list, prune, restore, status, verify};
use crate::error::{Error, Result};
use crate::kube::Cluster;
use crate::store::{StoreSet, Which};
use args::OutputFormat;

/// Runs the parsed command line and returns the process exit code (0 success, 1 failure, 2 usage or
/// configuration). Errors are one log line with what to check.
pub fn run(cli: Cli) -> i32 {
    crate::memory::bound_allocator();
    crate::tls::install_crypto_provider();
    crate::telemetry::init(cli.global.log_format.into());
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
    let outcome = runtime.block_on(until_stopped(dispatch(cli)));
    // Blocking steps (a child process being stopped) get a moment to end; no longer.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
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

/// Runs the command; on SIGTERM asks it to stop (see `interrupt`) and waits a bounded time for it to
/// report where it stopped, well inside the pod's grace period.
async fn until_stopped(work: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return work.await;
    };
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => return r,
        _ = term.recv() => {}
    }
    warn!("SIGTERM: stopping");
    crate::interrupt::request_stop();
    let during = || crate::interrupt::current_step().unwrap_or_else(|| "starting".into());
    match tokio::time::timeout(std::time::Duration::from_secs(20), &mut work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e @ Error::Stopped { .. })) => Err(e),
        // The step failed because its child was stopped: say it was the signal, and where.
        Ok(Err(e)) => Err(Error::Stopped {
            during: format!("{} ({e})", during()),
        }),
        Err(_) => Err(Error::Stopped { during: during() }),
    }
}

/// Who holds the restore Lease, for `status` (a cluster that cannot be asked is said in the log, not
/// an error: the backups are what `status` is about).
/// Whether a restore runs, and the last drill: a failure to ask is logged (and, for the drill, reported).
async fn cluster_facts(cluster: &Cluster, args: &args::StatusArgs) -> status::ClusterFacts {
    let restore_running = restore_holder(cluster, &args.lease).await;
    let source = crate::kube::job_status::DrillSource {
        namespace: args.lease.lease_namespace.clone(),
        cronjob: args.drill_cronjob.clone(),
    };
    let drill =
        async { crate::kube::job_status::last_drill(cluster.client().await?, &source).await };
    let (last_drill, last_drill_error) = match drill.await {
        Ok(d) => (d, None),
        Err(e) => {
            warn!(error = %e, "cannot tell how the last drill went");
            (None, Some(e.to_string()))
        }
    };
    status::ClusterFacts {
        restore_running,
        last_drill,
        last_drill_error,
    }
}

async fn restore_holder(cluster: &Cluster, lease: &args::LeaseArgs) -> Option<String> {
    let asked = async {
        let client = cluster.client().await?;
        crate::kube::lease::held_by(client, &lease.lease_namespace, &lease.lease_name).await
    };
    match asked.await {
        Ok(holder) => holder.map(|h| {
            format!(
                "lease {}/{} held by {h}",
                lease.lease_namespace, lease.lease_name
            )
        }),
        Err(e) => {
            warn!(error = %e, "cannot tell whether a restore runs (pass --no-kubernetes outside a cluster)");
            None
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let global = cli.global;
    let cluster = Cluster::default();
    match cli.command {
        Command::Backup(args) => {
            let cfg = config::backup_config(&global, &args)?;
            let stores = StoreSet::open(&config::store_config(&global, &args.stores)?).await?;
            let notifier = config::notifier(&args.notify_slack_webhook_url, args.notify_on_success);
            let summary =
                backup::run_and_notify(&cfg, &stores, &cluster, notifier.as_ref()).await?;
            print!("{}", render::backup(&summary));
            for r in summary
                .retention
                .iter()
                .filter(|r| !r.deleted.is_empty() || !r.stale_partials.is_empty())
            {
                info!(deleted = ?r.deleted, stale_partials = ?r.stale_partials, "retention removed old backups");
            }
            Ok(())
        }
        Command::List(args) => {
            let stores = StoreSet::open(&config::store_config(&global, &args.stores)?).await?;
            let backups = list::run(&stores).await?;
            print!(
                "{}",
                match args.output {
                    OutputFormat::Table => render::list_table(&backups),
                    OutputFormat::Json => list::render_json(&backups) + "\n",
                }
            );
            Ok(())
        }
        Command::Status(args) => {
            let stores = StoreSet::open(&config::store_config(&global, &args.stores)?).await?;
            let facts = if args.no_kubernetes {
                status::ClusterFacts::default()
            } else {
                cluster_facts(&cluster, &args).await
            };
            let status = status::run(&stores, args.max_age, facts).await?;
            print!(
                "{}",
                match args.output {
                    OutputFormat::Table => render::status(&status),
                    OutputFormat::Json =>
                        serde_json::to_string_pretty(&status).expect("status serializes") + "\n",
                }
            );
            if status.healthy {
                Ok(())
            } else {
                Err(Error::Unhealthy {
                    problems: status
                        .stores
                        .iter()
                        .filter(|s| s.health != status::Health::Ok)
                        .map(|s| format!("{} {}", s.location, s.health.as_str()))
                        .chain(
                            status
                                .last_drill
                                .iter()
                                .filter(|d| d.result == crate::kube::job_status::State::Failed)
                                .map(|d| format!("the last drill ({}) FAILED", d.job)),
                        )
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
        Command::Verify(args) => {
            let stores = StoreSet::open(&config::store_config(&global, &args.stores)?).await?;
            let report =
                verify::run(&stores, &Which::from_arg(&args.name), args.identity_file).await?;
            print!("{}", render::verify(&report));
            Ok(())
        }
        Command::Prune(args) => {
            let cfg = config::prune_config(&args)?;
            let stores = StoreSet::open(&config::store_config(&global, &args.stores)?).await?;
            let reports = prune::run(&cfg, &stores).await?;
            print!("{}", render::prune(&reports));
            Ok(())
        }
        Command::Restore(args) => {
            let cfg = config::restore_config(&global, &args)?;
            let stores = StoreSet::open(&config::store_config(&global, &args.stores)?).await?;
            let summary = restore::run(&cfg, &stores, &cluster).await?;
            print!("{}", render::restore(&summary));
            Ok(())
        }
        Command::Drill(args) => {
            let stores = StoreSet::open(&config::store_config(&global, &args.stores)?).await?;
            let cfg = config::drill_config(&args)?;
            let notifier = config::notifier(&args.notify_slack_webhook_url, args.notify_on_success);
            let report = drill::run_and_notify(&cfg, &stores, notifier.as_ref()).await?;
            print!("{}", render::drill(&report));
            if report.passed {
                Ok(())
            } else {
                Err(Error::Restore {
                    step: "drill".into(),
                    problem: format!("{} problems", report.problems.len()),
                    hint: "the lines above".into(),
                })
            }
        }
        Command::Serve(args) => {
            crate::webhook::serve(config::webhook_config(&global, &args)?, cluster).await
        }
    }
}
