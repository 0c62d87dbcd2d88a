use clap::Parser;

fn main() {
    let cli = eternia_backup::cli::Cli::parse();
    std::process::exit(eternia_backup::cli::run(cli));
}
