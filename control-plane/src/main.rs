use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    control_plane::commands::run(control_plane::cli::Cli::parse()).await
}
