use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Boxed: the command futures together are larger than a stack frame should hold.
    Box::pin(control_plane::commands::run(control_plane::cli::Cli::parse())).await
}
