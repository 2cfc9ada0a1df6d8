use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenant_router::run(tenant_router::settings::RouterSettings::parse()).await
}
