use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = strongroom_cli::cmd::Cli::parse();
    strongroom_cli::cmd::run(cli)
}
