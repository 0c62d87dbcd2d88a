//! The command line's arguments (clap only). Every flag has an environment equivalent so the Helm chart
//! configures everything through env and mounted Secrets. Secret-bearing values are hidden from `--help`
//! and never printed. `cli::config` turns these into the operations' typed configuration.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::{parse_duration, parse_size};

#[derive(Parser)]
#[command(
    name = "eternia-backup",
    version,
    about = "Backup and one-command restore for PostgreSQL on Kubernetes"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// Backup volume (the PVC mount).
    #[arg(long, env = "BACKUP_DIR", default_value = "/backups", global = true)]
    pub backup_dir: PathBuf,
    /// Archive name prefix: <prefix>-YYYYMMDD-HHMMSS.tar.gz
    #[arg(
        long,
        env = "BACKUP_PREFIX",
        default_value = "eternia-backup",
        global = true
    )]
    pub prefix: String,
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormatArg,
}

#[derive(Subcommand)]
pub enum Command {
    /// Dump the database and the namespace's ConfigMaps/Secrets into a new archive, then apply retention.
    Backup(BackupArgs),
    /// List complete backups.
    List(ListArgs),
    /// Re-read an archive and check every checksum and the manifest.
    Verify(VerifyArgs),
    /// Apply retention: delete backups no rule keeps and stale partial files.
    Prune(PruneArgs),
    /// Verify a backup, take a safety backup, restore the database and the ConfigMaps/Secrets, restart.
    Restore(RestoreArgs),
    /// Test-restore a backup into a scratch database, compare row counts, drop it.
    Drill(DrillArgs),
    /// Is last night's backup there? Per store the newest backup, its age against BACKUP_MAX_AGE, its size and
    /// the sizes before it, and whether a restore runs. Exit 0 when every store is OK, 1 otherwise.
    Status(StatusArgs),
    /// Run the restore webhook: signed restore requests from CI (JWT) and Slack become restore Jobs.
    Serve(ServeArgs),
}

#[derive(Args, Clone)]
pub struct RestoreArgs {
    /// Archive name or `latest` (omit with --before).
    #[arg(required_unless_present = "before")]
    pub name: Option<String>,
    /// Restore the newest backup created at or before this time (RFC 3339).
    #[arg(long, conflicts_with = "name")]
    pub before: Option<jiff::Timestamp>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// Print the plan (archive, checksums, tables, objects, Deployments) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, env = "RESTORE_MODE", value_enum, default_value = "clean")]
    pub mode: ModeArg,
    /// Skip the safety backup of the current state (no way back).
    #[arg(long, env = "RESTORE_NO_SAFETY_BACKUP", value_parser = BoolishValueParser::new())]
    pub no_safety_backup: bool,
    /// Restore into this database instead of the configured one.
    #[arg(long, conflicts_with = "all_databases")]
    pub target_database: Option<String>,
    #[command(flatten)]
    pub which_databases: WhichDatabasesArgs,
    /// Apply ConfigMaps/Secrets into this namespace instead of the archived one's configured namespace.
    #[arg(long)]
    pub target_namespace: Option<String>,
    /// Deployments to restart after the restore (repeatable; comma-separated in the environment).
    #[arg(
        long = "restart",
        env = "RESTORE_DEPLOYMENTS",
        value_delimiter = ',',
        default_value = "deployment/eternia-backend"
    )]
    pub restart: Vec<String>,
    /// Also overwrite objects managed by Argo CD (its self-heal would revert them).
    #[arg(long)]
    pub include_gitops_managed: bool,
    /// How long to wait for each Deployment's rollout (e.g. 10m, 600s).
    #[arg(long, env = "RESTORE_ROLLOUT_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub rollout_timeout: std::time::Duration,
    /// age identity file for encrypted archives.
    #[arg(long, env = "AGE_IDENTITY_FILE")]
    pub identity_file: Option<PathBuf>,
    #[arg(long, env = "PG_RESTORE_BIN", default_value = "pg_restore")]
    pub pg_restore: PathBuf,
    /// Connections the dump streams into as it is verified (nothing is written to the volume); 1: one
    /// streamed pg_restore. Default: 2 to 4 (the CPUs this process may use).
    #[arg(long, env = "RESTORE_JOBS")]
    pub jobs: Option<u32>,
    #[command(
        flatten,
        next_help_heading = "Ownership and roles (managed PostgreSQL, a new server)"
    )]
    pub ownership: OwnershipArgs,
    /// Scale the --restart Deployments to zero before the database is touched and back to their replica
    /// count afterwards, also when the restore fails (instead of restarting them at the end).
    #[arg(long, env = "RESTORE_SCALE_TO_ZERO", value_parser = BoolishValueParser::new())]
    pub scale_to_zero: bool,
    /// Run before anything changes (after verification, before the scale-down and the safety backup): a shell command, or an
    /// http(s) URL that gets a JSON POST; its failure stops the restore. It gets no credentials from
    /// this environment, only ETERNIA_HOOK, ETERNIA_BACKUP and ETERNIA_DATABASE.
    #[arg(long, env = "RESTORE_PRE_HOOK", hide_env_values = true)]
    pub pre_restore_hook: Option<String>,
    /// Run after the restore, whatever its result (ETERNIA_RESULT: succeeded or failed), like
    /// --pre-restore-hook.
    #[arg(long, env = "RESTORE_POST_HOOK", hide_env_values = true)]
    pub post_restore_hook: Option<String>,
    /// How the safety backup is written (as a scheduled backup is).
    #[command(flatten, next_help_heading = "Safety backup")]
    pub safety: ArchiveArgs,
}

/// Which of an archive's databases (a backup of several holds one dump each).
#[derive(Args, Clone, Default)]
pub struct WhichDatabasesArgs {
    /// The archived database of this name (into the server's database of the same name, or
    /// --target-database); without it, the archive's first database.
    #[arg(long = "database", env = "RESTORE_DATABASE")]
    pub database: Option<String>,
    /// Every database of the archive, each into the server's database of its name.
    #[arg(long, env = "RESTORE_ALL_DATABASES", value_parser = BoolishValueParser::new(), conflicts_with = "database")]
    pub all_databases: bool,
}

#[derive(Args, Clone)]
pub struct DrillArgs {
    /// Archive name or `latest`.
    pub name: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub which_databases: WhichDatabasesArgs,
    #[command(flatten)]
    pub stores: StoreArgs,
    /// A file of SQL checks, `;`-separated, each returning one boolean that must be true.
    #[arg(long, env = "DRILL_CHECKS_FILE")]
    pub checks: Option<PathBuf>,
    /// Slack incoming webhook notified when the drill fails (and when it passes with --notify-on-success).
    #[arg(long, env = "NOTIFY_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub notify_slack_webhook_url: Option<String>,
    #[arg(long, env = "NOTIFY_ON_SUCCESS", value_parser = BoolishValueParser::new())]
    pub notify_on_success: bool,
    #[arg(long, env = "AGE_IDENTITY_FILE")]
    pub identity_file: Option<PathBuf>,
    #[arg(long, env = "PG_RESTORE_BIN", default_value = "pg_restore")]
    pub pg_restore: PathBuf,
}

#[derive(Args, Clone)]
pub struct DatabaseArgs {
    /// postgres://user:password@host:port/db (otherwise PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreArg {
    Local,
    S3,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Into the database itself, after ending other sessions and emptying it (exactly the backed-up state).
    Clean,
    /// Restore into a scratch database, check it, then rename it into place (the old one is kept).
    Swap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumArg {
    WhenRequired,
    Crc32,
    Sha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Json,
    Text,
}

/// Where backups are written and read. Default: both when a bucket is configured, else local.
#[derive(Args, Clone)]
pub struct StoreArgs {
    #[arg(long, env = "BACKUP_STORE", value_enum)]
    pub store: Option<StoreArg>,
    /// Bucket for the off-site copy (S3-compatible).
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
    /// Custom endpoint (MinIO, Ceph RGW, Garage, R2…).
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style addressing (most S3-compatible servers).
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_force_path_style: bool,
    #[arg(long = "s3-region", env = "AWS_REGION")]
    pub s3_region: Option<String>,
    /// e.g. STANDARD_IA, GLACIER_IR.
    #[arg(long, env = "S3_STORAGE_CLASS")]
    pub s3_storage_class: Option<String>,
    /// Server-side encryption: AES256 or aws:kms.
    #[arg(long, env = "S3_SSE")]
    pub s3_sse: Option<String>,
    #[arg(long, env = "S3_SSE_KMS_KEY_ID")]
    pub s3_sse_kms_key_id: Option<String>,
    /// Request checksums: when-required (works with most S3-compatible servers), crc32, sha256.
    #[arg(long, env = "S3_CHECKSUM", value_enum, default_value = "when-required")]
    pub s3_checksum: ChecksumArg,
    /// Multipart part size (>= 5MiB).
    #[arg(long, env = "S3_PART_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub s3_part_size: u64,
    /// Parts uploaded concurrently.
    #[arg(long, env = "S3_MAX_IN_FLIGHT", default_value_t = 2)]
    pub s3_max_in_flight: usize,
    /// Attempts per request on transient errors (5xx, timeouts, resets), with backoff.
    #[arg(long, env = "S3_MAX_ATTEMPTS", default_value_t = 4)]
    pub s3_max_attempts: u32,
}

#[derive(Args, Clone)]
pub struct RetentionArgs {
    /// Keep every backup younger than this many days (0 = rule off; then another keep rule is required).
    #[arg(long, env = "BACKUP_RETENTION_DAYS", default_value_t = 7)]
    pub keep_days: u32,
    /// Keep the newest N backups.
    #[arg(long, env = "BACKUP_KEEP_LAST", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest backup of each of the last N days.
    #[arg(long, env = "BACKUP_KEEP_DAILY", default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the newest backup of each of the last N ISO weeks.
    #[arg(long, env = "BACKUP_KEEP_WEEKLY", default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the newest backup of each of the last N months.
    #[arg(long, env = "BACKUP_KEEP_MONTHLY", default_value_t = 0)]
    pub keep_monthly: u32,
    /// Keep a restore's safety backups this many days (the newest always), apart from the rules above.
    #[arg(long, env = "BACKUP_SAFETY_RETENTION_DAYS", default_value_t = 7)]
    pub keep_safety_days: u32,
}

/// The Kubernetes side: which namespace's ConfigMaps and Secrets a backup exports (and a restore applies).
#[derive(Args, Clone)]
pub struct KubernetesArgs {
    /// Skip the Kubernetes export (running outside a cluster).
    #[arg(long, env = "BACKUP_NO_KUBERNETES", value_parser = BoolishValueParser::new())]
    pub no_kubernetes: bool,
    /// Namespace whose ConfigMaps and Secrets are exported.
    #[arg(long, env = "BACKUP_NAMESPACE", default_value = "eternia-production")]
    pub namespace: String,
    /// Only export objects matching this label selector.
    #[arg(long, env = "BACKUP_INCLUDE_SELECTOR")]
    pub include_selector: Option<String>,
    /// Leave out objects matching this label selector.
    #[arg(long, env = "BACKUP_EXCLUDE_SELECTOR")]
    pub exclude_selector: Option<String>,
    /// Also export kube-root-ca.crt, service-account tokens and Helm release Secrets.
    #[arg(long, env = "BACKUP_INCLUDE_SYSTEM_OBJECTS", value_parser = BoolishValueParser::new())]
    pub include_system_objects: bool,
}

/// How an archive is written: compression, encryption, chunking, and the pg_dump that fills it.
#[derive(Args, Clone)]
pub struct ArchiveArgs {
    #[arg(long, env = "BACKUP_COMPRESSION", value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// Compression level (gzip 0-9, default 1; zstd 1-19, default 1).
    #[arg(long, env = "BACKUP_COMPRESSION_LEVEL")]
    pub compression_level: Option<i32>,
    /// zstd worker threads (0 = on the writer thread).
    #[arg(long, env = "BACKUP_COMPRESSION_THREADS", default_value_t = 1)]
    pub compression_threads: u32,
    /// Encrypt the archive to this age recipient (repeatable; comma-separated in the environment).
    #[arg(long = "encrypt-to", env = "BACKUP_ENCRYPT_TO", value_delimiter = ',')]
    pub encrypt_to: Vec<String>,
    /// Size of the dump chunks stored in the archive (e.g. 4MiB).
    #[arg(long, env = "BACKUP_CHUNK_SIZE", default_value = "4MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// pg_dump to run (its major version must be >= the server's).
    #[arg(long, env = "PG_DUMP_BIN", default_value = "pg_dump")]
    pub pg_dump: PathBuf,
    /// Seconds between progress log lines.
    #[arg(
        long,
        env = "BACKUP_PROGRESS_INTERVAL",
        default_value_t = 10,
        hide = true
    )]
    pub progress_interval: u64,
}

/// The Lease that serializes restores.
#[derive(Args, Clone)]
pub struct LeaseArgs {
    /// The Lease that serializes restores (a backup skips while a restore holds it).
    #[arg(long, env = "LEASE_NAME", default_value = "eternia-backup-restore")]
    pub lease_name: String,
    /// Namespace of the Lease (the release namespace).
    #[arg(long, env = "LEASE_NAMESPACE", default_value = "backup")]
    pub lease_namespace: String,
}

#[derive(Args, Clone)]
pub struct BackupArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Further databases in the same archive (comma-separated), or `all` (every database that is not a
    /// template): one dump each, the connection's database first.
    #[arg(long, env = "BACKUP_DATABASES", value_delimiter = ',')]
    pub databases: Vec<String>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Do not apply retention after the backup.
    #[arg(long, env = "BACKUP_NO_PRUNE", value_parser = BoolishValueParser::new())]
    pub no_prune: bool,
    /// Slack incoming webhook notified on failure (and on success with --notify-on-success).
    #[arg(long, env = "NOTIFY_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub notify_slack_webhook_url: Option<String>,
    #[arg(long, env = "NOTIFY_ON_SUCCESS", value_parser = BoolishValueParser::new())]
    pub notify_on_success: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Args, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Args, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Age past which the newest backup is LATE (a daily schedule: 26h).
    #[arg(long, env = "BACKUP_MAX_AGE", default_value = "26h", value_parser = parse_duration)]
    pub max_age: std::time::Duration,
    /// Do not ask the Kubernetes API whether a restore holds the Lease, nor about the last drill.
    #[arg(long, env = "BACKUP_NO_KUBERNETES", value_parser = BoolishValueParser::new())]
    pub no_kubernetes: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// The drill CronJob whose newest Job is the last drill (in the Lease's namespace, the release's).
    #[arg(long, env = "DRILL_CRONJOB", default_value = "database-drill")]
    pub drill_cronjob: String,
}

#[derive(Args, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Archive name or `latest`.
    pub name: String,
    /// age identity file to check the inside of encrypted archives.
    #[arg(long, env = "AGE_IDENTITY_FILE")]
    pub identity_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct PruneArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Print what would be deleted and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Seconds after which a `*.partial` file or an unfinished multipart upload counts as abandoned.
    #[arg(
        long,
        env = "BACKUP_STALE_PARTIAL_AGE",
        default_value_t = 86_400,
        hide = true
    )]
    pub stale_partial_age: u64,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// Where `GET /v1/backups` and the backup metrics look.
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Shared secret for HS256 tokens (from a Secret). Unset: HS256 tokens are refused.
    #[arg(
        long,
        env = "WEBHOOK_JWT_HS256_SECRET",
        hide = true,
        hide_env_values = true
    )]
    pub jwt_hs256_secret: Option<String>,
    /// JWKS document of trusted RS256/ES256 signing keys (file).
    #[arg(long, env = "WEBHOOK_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS document URL, e.g. https://token.actions.githubusercontent.com/.well-known/jwks.
    #[arg(long, env = "WEBHOOK_JWKS_URL")]
    pub jwks_url: Option<url::Url>,
    /// Required `iss` claim.
    #[arg(long, env = "WEBHOOK_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "WEBHOOK_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Token subjects allowed to restore, comma-separated patterns with `*`.
    #[arg(long, env = "WEBHOOK_ALLOWED_SUBJECTS", value_delimiter = ',')]
    pub allowed_subjects: Vec<String>,
    /// Further claim constraints, comma-separated `claim=pattern` (e.g. `environment=production,ref=refs/heads/main`).
    #[arg(long, env = "WEBHOOK_JWT_CLAIMS", value_delimiter = ',')]
    pub jwt_claims: Vec<String>,
    /// Oldest token accepted (from `iat`; without `iat`, the longest remaining lifetime).
    #[arg(long, env = "WEBHOOK_JWT_MAX_AGE", default_value = "1h", value_parser = parse_duration)]
    pub jwt_max_age: std::time::Duration,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[arg(long, env = "WEBHOOK_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: std::time::Duration,
    /// Slack app signing secret (from a Secret). Unset: Slack requests are refused.
    #[arg(
        long,
        env = "SLACK_SIGNING_SECRET",
        hide = true,
        hide_env_values = true
    )]
    pub slack_signing_secret: Option<String>,
    /// Slack user ids allowed to use the command (comma-separated). Empty: nobody.
    #[arg(long, env = "SLACK_ALLOWED_USERS", value_delimiter = ',')]
    pub slack_allowed_users: Vec<String>,
    /// Slack channel ids the command may be used in (comma-separated). Empty: any channel.
    #[arg(long, env = "SLACK_ALLOWED_CHANNELS", value_delimiter = ',')]
    pub slack_allowed_channels: Vec<String>,
    /// Only `response_url`s starting with this are called back.
    #[arg(
        long,
        env = "SLACK_RESPONSE_URL_PREFIX",
        default_value = "https://hooks.slack.com/"
    )]
    pub slack_response_url_prefix: String,
    /// How long a Slack restore confirmation button stays valid.
    #[arg(long, env = "SLACK_CONFIRM_TTL", default_value = "5m", value_parser = parse_duration)]
    pub slack_confirm_ttl: std::time::Duration,
    /// The suspended CronJob whose jobTemplate restore Jobs are created from.
    #[arg(
        long,
        env = "WEBHOOK_RESTORE_CRONJOB",
        default_value = "database-restore"
    )]
    pub restore_cronjob: String,
    /// Namespace of that CronJob and of the restore Jobs (default: the pod's own namespace).
    /// The drill CronJob whose newest Job `GET /v1/status` reports (in the Job namespace).
    #[arg(long, env = "DRILL_CRONJOB", default_value = "database-drill")]
    pub drill_cronjob: String,
    #[arg(long, env = "WEBHOOK_JOB_NAMESPACE")]
    pub job_namespace: Option<String>,
    /// The Lease a running restore holds.
    #[arg(long, env = "LEASE_NAME", default_value = "eternia-backup-restore")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the Job namespace).
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Requests per minute per source on the API and Slack routes (0: no limit).
    #[arg(long, env = "WEBHOOK_RATE_LIMIT", default_value_t = 60)]
    pub rate_limit: u32,
    /// Requests a source may send at once before the per-minute rate applies.
    #[arg(long, env = "WEBHOOK_RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,
    /// Proxies (the ingress controller) whose X-Forwarded-For is believed: address ranges, comma-separated
    /// (e.g. 10.0.0.0/8). The client is the right-most X-Forwarded-For entry that is not one of them.
    #[arg(long, env = "WEBHOOK_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Believe X-Forwarded-For from any direct peer (its right-most entry only); prefer --trusted-proxies.
    #[arg(long, env = "WEBHOOK_TRUST_FORWARDED_FOR", value_parser = BoolishValueParser::new())]
    pub trust_forwarded_for: bool,
    /// Largest request body accepted.
    #[arg(long, env = "WEBHOOK_BODY_LIMIT", default_value = "64KiB", value_parser = parse_size)]
    pub body_limit: u64,
    /// HTTP worker threads.
    #[arg(long, env = "WEBHOOK_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// How often the backup metrics are refreshed from the stores.
    #[arg(long, env = "WEBHOOK_METRICS_REFRESH", default_value = "60s", value_parser = parse_duration)]
    pub metrics_refresh: std::time::Duration,
    /// Age past which the newest backup is LATE in `GET /v1/status` and Slack's `status`.
    #[arg(long, env = "BACKUP_MAX_AGE", default_value = "26h", value_parser = parse_duration)]
    pub max_backup_age: std::time::Duration,
    /// How often a started restore Job is polled (for Slack progress and the restore metrics).
    #[arg(long, env = "WEBHOOK_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration, hide = true)]
    pub poll_interval: std::time::Duration,
}

/// Who owns the restored objects, and the roles a restore into a new server creates.
#[derive(Args, Debug, Clone)]
pub struct OwnershipArgs {
    /// Do not give the restored objects their backed-up owners: they belong to the restoring role (or
    /// `--role`). For a managed server where the restoring role may not act as the owners.
    #[arg(long, env = "RESTORE_NO_OWNER", value_parser = BoolishValueParser::new())]
    pub no_owner: bool,
    /// Do not restore privileges (GRANT/REVOKE on the restored objects).
    #[arg(long, env = "RESTORE_NO_PRIVILEGES", value_parser = BoolishValueParser::new())]
    pub no_privileges: bool,
    /// Role to restore as (`SET ROLE`): the objects created belong to it.
    #[arg(long = "role", env = "RESTORE_ROLE")]
    pub role: Option<String>,
    /// `OLD=NEW`: what role OLD owned in the backup, role NEW owns once restored; the other owners are
    /// kept (repeat the flag, or comma-separate in RESTORE_OWNER_MAP). OLD need not exist on the server.
    #[arg(
        long = "owner-map",
        env = "RESTORE_OWNER_MAP",
        value_delimiter = ',',
        conflicts_with = "no_owner"
    )]
    pub owner_map: Vec<String>,
    /// Do not create the roles the backup needs that the server lacks (they are created by default,
    /// without passwords unless --role-passwords-dir has one).
    #[arg(long, env = "RESTORE_NO_CREATE_ROLES", value_parser = BoolishValueParser::new())]
    pub no_create_roles: bool,
    /// Directory with one file per role name holding the password a created role gets (a Secret
    /// mounted as a volume). Existing roles are never changed.
    #[arg(long, env = "RESTORE_ROLE_PASSWORDS_DIR")]
    pub role_passwords_dir: Option<PathBuf>,
}
